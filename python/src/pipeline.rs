//! `sluice.Pipeline` and its epoch iterator: the Rust builder's settings as keyword arguments,
//! epochs iterated with the GIL released, Ctrl-C honoured while waiting, resume through
//! `state_dict`, and a guard against use after `fork()`.

use crate::batch::Batch;
use crate::convert::{self, count, Declared};
use crate::errors::{bad_setting, check_not_forked, IntoPy};
use crate::source;
use pyo3::exceptions::{PyRuntimeError, PyStopIteration};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use sluice::exec::{EpochIter, Wait};
use sluice::ops::DecodeLimits;
use sluice::optimizer::{self, profile, Goal, LogicalPlan};
use sluice::pipeline::Settings;
use sluice::state::PackedPosition;
use sluice::Pipeline as CorePipeline;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long `next()` waits before looking for a pending signal (Ctrl-C) again.
const SIGNAL_POLL: Duration = Duration::from_millis(50);

/// Where iteration stands, for `state_dict`, and a resume point set by `load_state_dict`.
#[derive(Debug, Default)]
struct Progress {
    /// The epoch last iterated and the batches delivered in it.
    epoch: u32,
    position: u64,
    /// The epoch `iter(pipeline)` runs next.
    next_epoch: u32,
    /// A packed pipeline's token stream position at `position`.
    packed: Option<PackedPosition>,
    /// Set by `load_state_dict`: the next iteration over this epoch starts at this batch
    /// (and, packed, from this stream position).
    resume: Option<(u32, u64)>,
    resume_packed: Option<PackedPosition>,
}

/// Where the Python package keeps generated data and measured profiles.
pub fn cache_dir(what: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("SLUICE_CACHE_DIR") {
        return PathBuf::from(dir).join(what);
    }
    let home = std::env::var_os("HOME").map_or_else(std::env::temp_dir, PathBuf::from);
    home.join(".cache").join("sluice").join(what)
}

/// A declared pipeline: source, operators and settings, ready to iterate.
///
/// `Pipeline(source, ops, *, batch_size=32, shuffle=False, seed=0, threads=None, prefetch=2,
/// max_prefetch=0, drop_last=False, on_error="fail", placement="cpu", device_batches=False,
/// cuda_device=None, cache_mib=0, fuse=True, max_pixels=None, max_side=None, optimize=False, profile=None,
/// save_profile=None, train_step_ms=0.0, epochs=1, cache_budget_mib=0, allow_approx=False,
/// pad_multiple=1, pad_value=0.0, pad_id=None, bucket=0, pad_to_length=0, shard_window=0,
/// rank=0, world=1, uneven="wrap")`
#[pyclass(module = "sluice", frozen)]
pub struct Pipeline {
    inner: CorePipeline,
    logical: LogicalPlan,
    source_obj: Py<PyAny>,
    ops_obj: Py<PyList>,
    kwargs: Py<PyDict>,
    /// The optimizer's explanation, when the pipeline was planned by it.
    explained: Option<String>,
    progress: Arc<Mutex<Progress>>,
    created_in: u32,
}

/// Read one keyword setting from the dict the constructor collected.
fn get<'py, T: FromPyObjectOwned<'py>>(kw: &Bound<'py, PyDict>, name: &str) -> PyResult<T> {
    let value = kw
        .get_item(name)?
        .ok_or_else(|| bad_setting(name, "missing"))?;
    value
        .extract::<T>()
        .map_err(|e| bad_setting(name, Into::<PyErr>::into(e)))
}

impl Pipeline {
    /// Build from the source object, the list of `sluice.ops` declarations and the settings.
    fn build(
        py: Python<'_>,
        source_obj: Bound<'_, PyAny>,
        ops_obj: Bound<'_, PyList>,
        kw: Bound<'_, PyDict>,
    ) -> PyResult<Pipeline> {
        // An audio pipeline starts with DecodeAudio, a text one with Tokenize; the rest are
        // operators.
        let mut items: Vec<Bound<'_, PyAny>> = ops_obj.iter().collect();
        let first_kind = items
            .first()
            .and_then(|o| o.getattr("_kind").and_then(|k| k.extract::<String>()).ok());
        let (mut audio, mut text) = (None, None);
        match first_kind.as_deref() {
            Some("DecodeAudio") => {
                audio = Some(crate::audio_ops::decode_audio_from_py(&items.remove(0))?)
            }
            Some("Tokenize") => {
                text = Some(crate::text_ops::decode_text_from_py(py, &items.remove(0))?)
            }
            _ => {}
        }
        let tokenizer = text.as_ref().map(|d| &d.tokenizer);
        let declared: Vec<Declared> = items
            .iter()
            .map(|o| convert::op_from_py(o, tokenizer))
            .collect::<PyResult<_>>()?;
        let kind = match (&audio, &text) {
            (Some(_), _) => source::Kind::Audio,
            (_, Some(_)) => source::Kind::Text,
            _ => source::Kind::Images,
        };
        let source = source::open(py, &source_obj, kind)?;
        let threads = match get::<Option<i64>>(&kw, "threads")? {
            Some(n) => count("threads", n, 1)?,
            None => Settings::default().threads,
        };
        let settings = Settings {
            batch_size: count("batch_size", get(&kw, "batch_size")?, 1)?,
            drop_last: get(&kw, "drop_last")?,
            shuffle: get(&kw, "shuffle")?,
            seed: get(&kw, "seed")?,
            threads,
            prefetch: count("prefetch", get(&kw, "prefetch")?, 1)?,
            max_prefetch: count("max_prefetch", get(&kw, "max_prefetch")?, 0)?,
            policy: convert::policy(&get::<String>(&kw, "on_error")?)?,
            fuse: get(&kw, "fuse")?,
            approx_decode: get(&kw, "allow_approx")?,
            cache_bytes: count("cache_mib", get(&kw, "cache_mib")?, 0)? << 20,
            pad_multiple: count("pad_multiple", get(&kw, "pad_multiple")?, 1)?,
            pad_value: get(&kw, "pad_value")?,
            // Default: the tokenizer's pad token, else its EOS (GPT-2's convention), else 0.
            pad_id: get::<Option<u32>>(&kw, "pad_id")?
                .or_else(|| tokenizer.and_then(|t| t.pad.or(t.eos)))
                .unwrap_or(0),
            pad_length: count("pad_to_length", get(&kw, "pad_to_length")?, 0)?,
            bucket_windows: count("bucket", get(&kw, "bucket")?, 0)?,
            shard_window: count("shard_window", get(&kw, "shard_window")?, 0)?,
            rank: count("rank", get(&kw, "rank")?, 0)?,
            world: count("world", get(&kw, "world")?, 1)?,
            uneven: match get::<String>(&kw, "uneven")?.as_str() {
                "wrap" => sluice::rng::Uneven::Wrap,
                "drop" => sluice::rng::Uneven::Drop,
                other => {
                    return Err(bad_setting(
                        "uneven",
                        format!("{other:?}: \"wrap\" (pad from the epoch's start) or \"drop\""),
                    ))
                }
            },
        };
        let batch_size = settings.batch_size;
        let mut limits = DecodeLimits::default();
        if let Some(n) = get::<Option<i64>>(&kw, "max_pixels")? {
            limits.max_pixels = count("max_pixels", n, 1)? as u64;
        }
        if let Some(n) = get::<Option<i64>>(&kw, "max_side")? {
            limits.max_side = u32::try_from(count("max_side", n, 1)?)
                .map_err(|_| bad_setting("max_side", "too large"))?;
        }
        let placement = convert::placement("placement", &get::<String>(&kw, "placement")?)?;
        let mut builder = CorePipeline::builder_shared(source.clone())
            .settings(settings)
            .decode_limits(limits)
            .placement(placement)
            .device_batches(get(&kw, "device_batches")?);
        if let Some(n) = get::<Option<i64>>(&kw, "cuda_device")? {
            builder = builder.cuda_device(count("cuda_device", n, 0)?);
        }
        if let Some(decoder) = audio {
            builder = builder.decode_audio(decoder);
        }
        if let Some(decoder) = text {
            builder = builder.decode_text(decoder);
        }
        for d in declared {
            builder = match (d.pin, d.fixed) {
                (Some(p), _) => builder.op_on(d.op, p),
                (None, true) => builder.op_fixed(d.op),
                (None, false) => builder.op(d.op),
            };
        }
        let logical = builder.logical_plan();
        let goal = Goal {
            batch_size,
            train_step_ms: get(&kw, "train_step_ms")?,
            epochs: get(&kw, "epochs")?,
            memory_budget_bytes: count("cache_budget_mib", get(&kw, "cache_budget_mib")?, 0)? << 20,
            allow_approx: get(&kw, "allow_approx")?,
        };
        let profile_path: Option<PathBuf> = get(&kw, "profile")?;
        let save_profile: Option<PathBuf> = get(&kw, "save_profile")?;
        let optimize: bool = get(&kw, "optimize")?;
        let (inner, explained) = py
            .detach(|| -> sluice::Result<_> {
                if !optimize {
                    return Ok((builder.build()?, None));
                }
                let dir = cache_dir("profiles");
                let profile = profile::for_pipeline(
                    source.as_ref(),
                    &logical.decoder,
                    &logical.ops,
                    profile_path.as_deref(),
                    &dir,
                )?;
                if let Some(path) = &save_profile {
                    profile.save(path)?;
                }
                let (builder, optimized) = builder.optimize(&profile, &goal)?;
                Ok((builder.build()?, Some(optimized.explain(&goal))))
            })
            .py_err(py)?;
        Ok(Pipeline {
            inner,
            logical,
            source_obj: source_obj.unbind(),
            ops_obj: ops_obj.unbind(),
            kwargs: kw.unbind(),
            explained,
            progress: Arc::default(),
            created_in: std::process::id(),
        })
    }

    fn start_epoch(&self, epoch: u32) -> PyResult<EpochIterator> {
        check_not_forked(self.created_in)?;
        let mut p = self.progress.lock().unwrap();
        let (start, packed) = match p.resume {
            Some((e, at)) if e == epoch => {
                p.resume = None;
                (at, p.resume_packed.take())
            }
            _ => (0, None),
        };
        let iter = Python::attach(|py| {
            py.detach(|| self.inner.epoch_resumed(epoch, start, packed))
                .py_err(py)
        })?;
        p.epoch = epoch;
        p.position = start;
        p.packed = iter.packed_position();
        p.next_epoch = epoch + 1;
        Ok(EpochIterator {
            len: iter.num_batches(),
            inner: Mutex::new(Some(iter)),
            progress: Some(self.progress.clone()),
            created_in: self.created_in,
            epoch,
            output: self.inner.output().clone(),
        })
    }
}

#[pymethods]
impl Pipeline {
    #[new]
    #[pyo3(signature = (source, ops=None, *, batch_size=32, shuffle=false, seed=0, threads=None,
        prefetch=2, max_prefetch=0, drop_last=false, on_error="fail".to_string(),
        placement="cpu".to_string(), device_batches=false, cuda_device=None, cache_mib=0,
        fuse=true, max_pixels=None, max_side=None, optimize=false, profile=None, save_profile=None,
        train_step_ms=0.0, epochs=1, cache_budget_mib=0, allow_approx=false, pad_multiple=1,
        pad_value=0.0, pad_id=None, bucket=0, pad_to_length=0, shard_window=0, rank=0, world=1,
        uneven="wrap".to_string()))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        source: Bound<'_, PyAny>,
        ops: Option<Bound<'_, PyAny>>,
        batch_size: i64,
        shuffle: bool,
        seed: u64,
        threads: Option<i64>,
        prefetch: i64,
        max_prefetch: i64,
        drop_last: bool,
        on_error: String,
        placement: String,
        device_batches: bool,
        cuda_device: Option<i64>,
        cache_mib: i64,
        fuse: bool,
        max_pixels: Option<i64>,
        max_side: Option<i64>,
        optimize: bool,
        profile: Option<PathBuf>,
        save_profile: Option<PathBuf>,
        train_step_ms: f64,
        epochs: u32,
        cache_budget_mib: i64,
        allow_approx: bool,
        pad_multiple: i64,
        pad_value: f32,
        pad_id: Option<u32>,
        bucket: i64,
        pad_to_length: i64,
        shard_window: i64,
        rank: i64,
        world: i64,
        uneven: String,
    ) -> PyResult<Self> {
        let kw = PyDict::new(py);
        kw.set_item("batch_size", batch_size)?;
        kw.set_item("shuffle", shuffle)?;
        kw.set_item("seed", seed)?;
        kw.set_item("threads", threads)?;
        kw.set_item("prefetch", prefetch)?;
        kw.set_item("max_prefetch", max_prefetch)?;
        kw.set_item("drop_last", drop_last)?;
        kw.set_item("on_error", on_error)?;
        kw.set_item("placement", placement)?;
        kw.set_item("device_batches", device_batches)?;
        kw.set_item("cuda_device", cuda_device)?;
        kw.set_item("cache_mib", cache_mib)?;
        kw.set_item("fuse", fuse)?;
        kw.set_item("max_pixels", max_pixels)?;
        kw.set_item("max_side", max_side)?;
        kw.set_item("optimize", optimize)?;
        kw.set_item("profile", profile)?;
        kw.set_item("save_profile", save_profile)?;
        kw.set_item("train_step_ms", train_step_ms)?;
        kw.set_item("epochs", epochs)?;
        kw.set_item("cache_budget_mib", cache_budget_mib)?;
        kw.set_item("allow_approx", allow_approx)?;
        kw.set_item("pad_multiple", pad_multiple)?;
        kw.set_item("pad_value", pad_value)?;
        kw.set_item("pad_id", pad_id)?;
        kw.set_item("bucket", bucket)?;
        kw.set_item("pad_to_length", pad_to_length)?;
        kw.set_item("shard_window", shard_window)?;
        kw.set_item("rank", rank)?;
        kw.set_item("world", world)?;
        kw.set_item("uneven", uneven)?;
        let ops = match ops {
            None => PyList::empty(py),
            Some(o) => PyList::new(py, o.try_iter()?.collect::<PyResult<Vec<_>>>()?)?,
        };
        Pipeline::build(py, source, ops, kw)
    }

    /// The batches of epoch `epoch`, in sampler order (after `load_state_dict`, from the saved
    /// position when `epoch` is the saved epoch).
    fn epoch(&self, epoch: u32) -> PyResult<EpochIterator> {
        self.start_epoch(epoch)
    }

    /// Batches `start`, `start + step`, `start + 2*step`, ... of epoch `epoch`: one of `step`
    /// iterators that split an epoch by batch (each batch depends only on seed, epoch and
    /// position, so together they deliver exactly the epoch's batches; `sluice.ray` runs one
    /// per worker). Not tracked by `state_dict`. ValueError for a packed pipeline with
    /// `step > 1`.
    #[pyo3(signature = (epoch, start=0, step=1))]
    fn epoch_strided(
        &self,
        py: Python<'_>,
        epoch: u32,
        start: u64,
        step: u64,
    ) -> PyResult<EpochIterator> {
        check_not_forked(self.created_in)?;
        let iter = py
            .detach(|| self.inner.epoch_strided(epoch, start, step))
            .py_err(py)?;
        // The batches this iterator delivers: those of its stride from `start` on.
        let len = iter
            .num_batches()
            .map(|n| n.saturating_sub(start).div_ceil(step));
        Ok(EpochIterator {
            len,
            inner: Mutex::new(Some(iter)),
            progress: None,
            created_in: self.created_in,
            epoch,
            output: self.inner.output().clone(),
        })
    }

    /// Iterate the next epoch: 0, 1, 2, ... (or the epoch a loaded state resumes).
    fn __iter__(&self) -> PyResult<EpochIterator> {
        let epoch = {
            let p = self.progress.lock().unwrap();
            match p.resume {
                Some((e, at)) if self.inner.batches_per_epoch().is_some_and(|n| at >= n) => e + 1,
                Some((e, _)) => e,
                None => p.next_epoch,
            }
        };
        self.start_epoch(epoch)
    }

    /// Batches in one epoch (TypeError for a packed pipeline: its count depends on the
    /// tokens).
    fn __len__(&self) -> PyResult<usize> {
        let n = self.inner.batches_per_epoch();
        n.map(|n| n as usize).ok_or_else(packed_has_no_len)
    }

    /// Samples in the source.
    #[getter]
    fn num_samples(&self) -> usize {
        self.inner.len()
    }

    /// Where iteration stands: `{"epoch", "position", "batches_per_epoch", "seed",
    /// "fingerprint", "rank", "world"}`, and for a packed pipeline `"packed"` (the token
    /// stream's position, so a resume re-tokenizes only what the stream holds; without it the
    /// epoch is replayed) — torchdata's Stateful convention; the fingerprint identifies the
    /// data and the declaration. Restore with `load_state_dict`.
    fn state_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let p = self.progress.lock().unwrap();
        let ((epoch, position), packed) = match p.resume {
            Some(resume) => (resume, p.resume_packed),
            None => ((p.epoch, p.position), p.packed),
        };
        let d = PyDict::new(py);
        if let Some(at) = packed {
            let stream = PyDict::new(py);
            stream.set_item("chunk", at.chunk)?;
            stream.set_item("skip_tokens", at.skip_tokens)?;
            stream.set_item("next_chunk", at.next_chunk)?;
            d.set_item("packed", stream)?;
        }
        d.set_item("epoch", epoch)?;
        d.set_item("position", position)?;
        d.set_item("batches_per_epoch", self.inner.batches_per_epoch())?;
        d.set_item("seed", self.inner.settings().seed)?;
        let state = self.inner.state_at(epoch, position);
        d.set_item("fingerprint", state.fingerprint)?;
        d.set_item("rank", state.rank)?;
        d.set_item("world", state.world)?;
        Ok(d)
    }

    /// Resume from a `state_dict`: the next iteration over its epoch starts at its position
    /// and delivers exactly the batches an uninterrupted run would have.
    fn load_state_dict(&self, state: &Bound<'_, PyDict>) -> PyResult<()> {
        let epoch: u32 = get(state, "epoch")?;
        let position: u64 = get(state, "position")?;
        let n = self.inner.batches_per_epoch();
        if let Some(n) = n.filter(|&n| position > n) {
            return Err(bad_setting(
                "state_dict.position",
                format!("{position} is past the epoch's {n} batches"),
            ));
        }
        if let Some(seed) = state.get_item("seed")? {
            let seed: u64 = seed.extract()?;
            if seed != self.inner.settings().seed {
                return Err(bad_setting(
                    "state_dict.seed",
                    format!(
                        "saved by a pipeline with seed {seed}, this one has seed {}",
                        self.inner.settings().seed
                    ),
                ));
            }
        }
        if let Some(saved) = state.get_item("fingerprint")? {
            let saved: String = saved.extract()?;
            let mine = self.inner.state_at(epoch, position);
            let (rank, world): (usize, usize) = (
                state
                    .get_item("rank")?
                    .map_or(Ok(mine.rank), |r| r.extract())?,
                state
                    .get_item("world")?
                    .map_or(Ok(mine.world), |w| w.extract())?,
            );
            if (rank, world) != (mine.rank, mine.world) {
                return Err(bad_setting(
                    "state_dict.rank",
                    format!(
                        "saved by rank {rank} of {world}, this pipeline is rank {} of {}",
                        mine.rank, mine.world
                    ),
                ));
            }
            if saved != mine.fingerprint {
                return Err(bad_setting(
                    "state_dict.fingerprint",
                    format!(
                        "{saved} is not this pipeline's {} (other data, or another \
                         declaration: operators, batch size, shuffling, bucketing, shard window)",
                        mine.fingerprint
                    ),
                ));
            }
        }
        if let Some(saved) = state.get_item("batches_per_epoch")? {
            let saved: Option<u64> = saved.extract()?;
            if saved != n {
                return Err(bad_setting(
                    "state_dict.batches_per_epoch",
                    format!("saved with {saved:?} batches per epoch, this pipeline has {n:?}"),
                ));
            }
        }
        let packed = match state.get_item("packed")? {
            Some(v) if !v.is_none() => {
                let v = v.cast_into::<PyDict>().map_err(|_| {
                    bad_setting(
                        "state_dict.packed",
                        "a dict {chunk, skip_tokens, next_chunk}",
                    )
                })?;
                Some(PackedPosition {
                    chunk: get(&v, "chunk")?,
                    skip_tokens: get(&v, "skip_tokens")?,
                    next_chunk: get(&v, "next_chunk")?,
                })
            }
            _ => None,
        };
        let mut p = self.progress.lock().unwrap();
        p.resume = Some((epoch, position));
        p.resume_packed = packed;
        Ok(())
    }

    /// Why the operators run where they do (and, without a usable GPU, why not there).
    #[getter]
    fn placement_reason(&self) -> &str {
        self.inner.placement_reason()
    }

    /// Whether batches arrive in CUDA device memory.
    #[getter]
    fn device_batches(&self) -> bool {
        self.inner.device_batches()
    }

    /// Index of the first operator that runs on the GPU (the number of operators when none).
    #[getter]
    fn gpu_cut(&self) -> usize {
        self.inner.gpu_cut()
    }

    /// The declared operators (`sluice.ops` objects).
    #[getter]
    fn ops(&self, py: Python<'_>) -> Py<PyList> {
        self.ops_obj.clone_ref(py)
    }

    /// The source this pipeline reads.
    #[getter]
    fn source(&self, py: Python<'_>) -> Py<PyAny> {
        self.source_obj.clone_ref(py)
    }

    /// The settings as given (keyword arguments of the constructor).
    #[getter]
    fn settings<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.kwargs.bind(py).copy()
    }

    /// A readable description of the plan that runs: steps, placement, output, settings.
    fn describe(&self) -> String {
        self.inner.describe()
    }

    /// The optimizer's reasoning: the declared plan, each rule's decision with the predicted
    /// cost of every alternative, and the physical plan. For a pipeline built with
    /// `optimize=True` this is the plan that runs; otherwise it is what the optimizer would do
    /// (profile from `profile`, else measured here and cached).
    #[pyo3(signature = (profile=None, train_step_ms=None, epochs=None, cache_budget_mib=None, allow_approx=None))]
    fn explain(
        &self,
        py: Python<'_>,
        profile: Option<PathBuf>,
        train_step_ms: Option<f64>,
        epochs: Option<u32>,
        cache_budget_mib: Option<i64>,
        allow_approx: Option<bool>,
    ) -> PyResult<String> {
        check_not_forked(self.created_in)?;
        let asked = profile.is_some()
            || train_step_ms.is_some()
            || epochs.is_some()
            || cache_budget_mib.is_some()
            || allow_approx.is_some();
        if let (Some(text), false) = (&self.explained, asked) {
            return Ok(text.clone());
        }
        let kw = self.kwargs.bind(py);
        let budget = match cache_budget_mib {
            Some(m) => m,
            None => get(kw, "cache_budget_mib")?,
        };
        let goal = Goal {
            batch_size: self.inner.settings().batch_size,
            train_step_ms: train_step_ms.map_or_else(|| get(kw, "train_step_ms"), Ok)?,
            epochs: epochs.map_or_else(|| get(kw, "epochs"), Ok)?,
            memory_budget_bytes: count("cache_budget_mib", budget, 0)? << 20,
            allow_approx: allow_approx.map_or_else(|| get(kw, "allow_approx"), Ok)?,
        };
        let profile = profile.or(get(kw, "profile")?);
        let kind = source::Kind::of(&self.logical.decoder);
        let source = source::open(py, self.source_obj.bind(py), kind)?;
        let logical = &self.logical;
        py.detach(|| -> sluice::Result<String> {
            let dir = cache_dir("profiles");
            let p = profile::for_pipeline(
                source.as_ref(),
                &logical.decoder,
                &logical.ops,
                profile.as_deref(),
                &dir,
            )?;
            Ok(optimizer::optimize(logical, &p, &goal)?.explain(&goal))
        })
        .py_err(py)
    }

    /// Counters since the pipeline was built: time per stage, samples, skips, allocations.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let json = serde_json::to_string(&self.inner.stats())
            .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
        py.import("json")?.call_method1("loads", (json,))
    }

    /// Pickle as the declaration (source, operators, settings): a copy is built anew where it
    /// is unpickled (its own threads; iteration state is not carried).
    fn __reduce__<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyTuple>)> {
        let rebuild = py.import("sluice")?.getattr("_rebuild_pipeline")?;
        let args = PyTuple::new(
            py,
            [
                self.source_obj.clone_ref(py),
                self.ops_obj.clone_ref(py).into_any(),
                self.kwargs.clone_ref(py).into_any(),
            ],
        )?;
        Ok((rebuild, args))
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "sluice.Pipeline({}, ops={}, batch_size={})",
            self.source_obj.bind(py).repr()?,
            self.ops_obj.bind(py).repr()?,
            self.inner.settings().batch_size
        ))
    }
}

/// The batches of one epoch, in order. Dropping it (or `close()`) cancels the work still
/// queued; Ctrl-C while it waits raises `KeyboardInterrupt` and cancels the epoch.
#[pyclass(module = "sluice", frozen)]
pub struct EpochIterator {
    inner: Mutex<Option<EpochIter>>,
    /// The pipeline's progress, which this iterator updates (None: a strided part of an
    /// epoch, which `state_dict` does not track).
    progress: Option<Arc<Mutex<Progress>>>,
    created_in: u32,
    epoch: u32,
    /// Batches in the epoch (None when packed: known only once tokenized).
    len: Option<u64>,
    /// What the pipeline delivers (how batches are named).
    output: sluice::OutputSpec,
}

/// An iterator dropped before its end (`next(iter(pipe.epoch(0)))`, a `break`) is dropped with
/// the GIL held, and dropping waits for the batches in flight, whose workers may need the GIL
/// (an `ops.Lambda`): the wait happens on a thread of its own, so neither waits for the other.
impl Drop for EpochIterator {
    fn drop(&mut self) {
        let inner = self.inner.get_mut().map(Option::take).unwrap_or_default();
        if let Some(iter) = inner {
            std::thread::spawn(move || drop(iter));
        }
    }
}

#[pymethods]
impl EpochIterator {
    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Batch> {
        check_not_forked(self.created_in)?;
        let Ok(mut guard) = self.inner.try_lock() else {
            return Err(PyRuntimeError::new_err(
                "this epoch iterator is in use by another thread",
            ));
        };
        loop {
            let Some(iter) = guard.as_mut() else {
                return Err(PyStopIteration::new_err(()));
            };
            match py.detach(|| iter.next_within(SIGNAL_POLL)) {
                Wait::Ready(result) => {
                    if let Some(progress) = &self.progress {
                        let mut p = progress.lock().unwrap();
                        (p.epoch, p.position) = (self.epoch, iter.next_index());
                        p.packed = iter.packed_position();
                    }
                    return match result {
                        Ok(batch) => Batch::from_core(py, batch, &self.output),
                        Err(e) => Err(crate::errors::to_py(py, e)),
                    };
                }
                Wait::Finished => {
                    let done = guard.take();
                    py.detach(|| drop(done));
                    return Err(PyStopIteration::new_err(()));
                }
                Wait::TimedOut => {
                    if let Err(interrupt) = py.check_signals() {
                        // Cancel queued work at once; running work is waited for on a thread
                        // of its own, so the interrupt returns now even if a read is stuck.
                        if let Some(cancelled) = guard.take() {
                            std::thread::spawn(move || drop(cancelled));
                        }
                        return Err(interrupt);
                    }
                }
            }
        }
    }

    /// Batches in this epoch (all of them, including any a resume skipped). A packed epoch
    /// has no length until it is tokenized: TypeError, as for an iterable without one.
    fn __len__(&self) -> PyResult<usize> {
        self.len.map(|n| n as usize).ok_or_else(packed_has_no_len)
    }

    /// The epoch this iterator runs.
    #[getter]
    fn epoch(&self) -> u32 {
        self.epoch
    }

    /// Position of the next batch to be delivered.
    #[getter]
    fn position(&self) -> u64 {
        let tracked = || {
            self.progress
                .as_ref()
                .map_or(0, |p| p.lock().unwrap().position)
        };
        match self.inner.try_lock() {
            Ok(g) => match (g.as_ref(), self.len) {
                (Some(i), _) => i.next_index(),
                (None, Some(n)) => n,
                (None, None) => tracked(),
            },
            Err(_) => tracked(),
        }
    }

    /// Stop the epoch now: queued work is cancelled, running work finishes.
    fn close(&self, py: Python<'_>) {
        let taken = self.inner.lock().unwrap().take();
        py.detach(|| drop(taken));
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _t: Option<Bound<'_, PyAny>>,
        _v: Option<Bound<'_, PyAny>>,
        _tb: Option<Bound<'_, PyAny>>,
    ) {
        self.close(py);
    }
}

/// `len()` of a packed pipeline or epoch.
fn packed_has_no_len() -> PyErr {
    pyo3::exceptions::PyTypeError::new_err(
        "a packed pipeline (Pack) has no length: its batch count depends on the tokens",
    )
}

/// The pipeline `sluice bench NAME` runs, with the same settings (same bytes, same checksum).
#[pyfunction]
#[pyo3(signature = (name, data=None, *, images=None, batch_size=64, threads=None, seed=0,
    prefetch=2, on_error="fail".to_string(), placement="cpu".to_string(), device_batches=false,
    cuda_device=None, cache_mib=0, fuse=true, allow_approx=false, shard_window=0, rank=0,
    world=1))]
#[allow(clippy::too_many_arguments)]
pub fn workload(
    py: Python<'_>,
    name: &str,
    data: Option<Bound<'_, PyAny>>,
    images: Option<i64>,
    batch_size: i64,
    threads: Option<i64>,
    seed: u64,
    prefetch: i64,
    on_error: String,
    placement: String,
    device_batches: bool,
    cuda_device: Option<i64>,
    cache_mib: i64,
    fuse: bool,
    allow_approx: bool,
    shard_window: i64,
    rank: i64,
    world: i64,
) -> PyResult<Pipeline> {
    let w = sluice::bench::Workload::from_name(name).ok_or_else(|| {
        let names: Vec<_> = sluice::bench::WORKLOADS.iter().map(|(n, _)| *n).collect();
        bad_setting(
            "name",
            format!(
                "unknown workload {name:?}; choose one of {}",
                names.join(", ")
            ),
        )
    })?;
    let data = match data {
        Some(d) => d,
        None => {
            let default = match (w.is_audio(), w.is_text()) {
                (true, _) => 256,
                (_, true) => 4096,
                _ => 1024,
            };
            let n = count("images", images.unwrap_or(default), 1)?;
            let kind = match (w.is_audio(), w.is_text()) {
                (true, _) => "audio",
                (_, true) => "text",
                _ => "images",
            };
            generated_dataset(py, n, 10, 0, kind)?
                .into_pyobject(py)?
                .into_any()
        }
    };
    let defaults = w.batch_defaults(&Default::default());
    let logical = w
        .add_ops(CorePipeline::builder_shared(Arc::new(
            sluice::source::InMemory::new(vec![]),
        )))
        .logical_plan();
    let ops = logical.ops;
    let mut ops = ops
        .iter()
        .map(|op| convert::op_to_py(py, op, None))
        .collect::<PyResult<Vec<_>>>()?;
    match &logical.decoder {
        sluice::ops::Decoder::Audio(d) => {
            ops.insert(0, crate::audio_ops::decode_audio_to_py(py, d)?)
        }
        sluice::ops::Decoder::Text(d) => ops.insert(0, crate::text_ops::decode_text_to_py(py, d)?),
        sluice::ops::Decoder::Image(_) => {}
    }
    // The bench's settings; everything else at the constructor's defaults.
    Pipeline::new(
        py,
        data,
        Some(PyList::new(py, ops)?.into_any()),
        batch_size,
        w.shuffles(),
        seed,
        threads,
        prefetch,
        0,
        false,
        on_error,
        placement,
        device_batches,
        cuda_device,
        cache_mib,
        fuse,
        None,
        None,
        false,
        None,
        None,
        0.0,
        1,
        0,
        allow_approx,
        defaults.pad_multiple as i64,
        0.0,
        Some(defaults.pad_id),
        defaults.bucket_windows as i64,
        0,
        shard_window,
        rank,
        world,
        "wrap".into(),
    )
}

/// Names of the built-in workloads.
#[pyfunction]
pub fn workloads() -> Vec<&'static str> {
    sluice::bench::WORKLOADS.iter().map(|(n, _)| *n).collect()
}

/// The deterministic ImageNet-like JPEG dataset `sluice bench` generates (`ROOT/class_NNN/
/// img_NNNNNN.jpg`), made once under the cache directory (`$SLUICE_CACHE_DIR` or
/// `~/.cache/sluice`) and reused; returns its path.
#[pyfunction]
#[pyo3(signature = (images=1024, classes=10, seed=0, kind="images"))]
pub fn generated_dataset(
    py: Python<'_>,
    images: usize,
    classes: usize,
    seed: u64,
    kind: &str,
) -> PyResult<PathBuf> {
    let prefix = match kind {
        "audio" => "gen-audio",
        "text" => "gen-text",
        _ => "gen",
    };
    let dir = cache_dir("data").join(format!("{prefix}-n{images}-c{classes}-s{seed}"));
    gen_data(py, dir.clone(), images, classes, seed, kind, None)?;
    // A text corpus is one file of lines.
    Ok(if kind == "text" {
        dir.join("corpus.txt")
    } else {
        dir
    })
}

/// Write the generated dataset to `dir` (kept if a complete one with the same spec is there).
/// `long_side` (images): photos with a long side of about that many pixels (N to 1.1·N).
#[pyfunction]
#[pyo3(signature = (dir, n=1024, classes=10, seed=0, kind="images", long_side=None))]
pub fn gen_data(
    py: Python<'_>,
    dir: PathBuf,
    n: usize,
    classes: usize,
    seed: u64,
    kind: &str,
    long_side: Option<u32>,
) -> PyResult<()> {
    if n == 0 || classes == 0 {
        return Err(bad_setting("gen_data", "n and classes must be at least 1"));
    }
    if long_side.is_some_and(|l| !(16..=16384).contains(&l)) {
        return Err(bad_setting("long_side", "must be 16..=16384 pixels"));
    }
    match kind {
        "images" => {}
        "text" => {
            let spec = sluice::gen::text::TextCorpusSpec { documents: n, seed };
            return py
                .detach(|| sluice::gen::text::ensure_text_corpus(&dir, &spec))
                .py_err(py)
                .map(|_| ());
        }
        "audio" => {
            let spec = sluice::gen::audio::AudioDatasetSpec {
                files: n,
                classes,
                seed,
                ..Default::default()
            };
            return py
                .detach(|| sluice::gen::audio::ensure_audio_dataset(&dir, &spec, &|_| {}))
                .py_err(py)
                .map(|_| ());
        }
        other => {
            return Err(bad_setting(
                "kind",
                format!("{other:?}: give \"images\", \"audio\" or \"text\""),
            ))
        }
    }
    let spec = sluice::gen::DatasetSpec {
        images: n,
        classes,
        seed,
        long_side,
    };
    py.detach(|| sluice::gen::ensure_dataset(&dir, &spec, &|_| {}))
        .py_err(py)
        .map(|_| ())
}
