//! The cost profile the optimizer plans with, and the profiler that measures it.
//!
//! A profile is JSON (format: docs/COST_PROFILE.md). It names the machine, dataset and pipeline
//! it was measured on; a cached profile is reused while all three match. A hand-written profile
//! plans for a machine one does not have (e.g. an H100 box from a CPU-only laptop).

use super::profile_audio::measure_audio;
use super::profile_text::measure_text;
use crate::backend::cuda::CudaDevice;
use crate::backend::wgpu::{encode_batch, TensorWrite, WgpuContext};
use crate::error::{Error, Result};
use crate::exec::stages_for;
use crate::ops::{DecodeImage, Decoder, Op, OpParams, Scratch};
use crate::rng::SampleRng;
use crate::source::Source;
use crate::tensor::Image;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Measured (or stated) costs of one operator, per sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpCost {
    /// The operator as configured (its Debug form), so a profile is matched to its pipeline.
    pub op: String,
    /// CPU time on one core.
    pub cpu_ns: f64,
    /// Mean bytes in and out (u8 images: w·h·3; tensors: w·h·3·dtype size).
    pub bytes_in: f64,
    pub bytes_out: f64,
    /// GPU time per sample in a batch, where the GPU backend has the kernel (None: no kernel).
    /// For wgpu this is end to end (upload, kernel, readback).
    pub gpu_ns: Option<f64>,
}

/// The GPU side of a profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuCost {
    /// "wgpu" or "cuda".
    pub backend: String,
    pub name: String,
    /// Host-to-device bandwidth, GB/s (pinned memory for CUDA; a buffer upload for wgpu).
    pub h2d_gbps: f64,
    /// Whether results come back to host memory (wgpu today): then the output crosses the link
    /// twice more (down, and up again to the training device).
    pub reads_back: bool,
    /// A software rasterizer (lavapipe): correct, but it runs on the CPU cores.
    pub software: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostProfile {
    pub machine: String,
    pub dataset: String,
    /// The pipeline: its operators' Debug forms joined by " | ".
    pub pipeline: String,
    /// CPU cores available to worker threads.
    pub cpu_threads: usize,
    pub samples_measured: usize,
    pub dataset_len: usize,
    /// Read and decode, per sample, one core; decoded image bytes.
    pub read_ns: f64,
    pub decode_ns: f64,
    /// Image pipelines leading with a crop: decode per sample when the crop is pushed into
    /// decode (only the window it reads), and the same at the DCT-domain scale approximations
    /// allow; absent otherwise (and in profiles from before they were measured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_decode_ns: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaled_decode_ns: Option<f64>,
    pub decoded_bytes: f64,
    /// Host memcpy bandwidth, GB/s (what serving a cached sample costs).
    pub memcpy_gbps: f64,
    pub ops: Vec<OpCost>,
    pub gpu: Option<GpuCost>,
}

/// The pipeline fingerprint a profile is matched on.
pub fn pipeline_key(ops: &[Op]) -> String {
    ops.iter()
        .map(|o| format!("{o:?}"))
        .collect::<Vec<_>>()
        .join(" | ")
}

/// "N cores, CPU model" of this machine.
pub fn machine_name() -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    format!("{cores} x {model}")
}

impl CostProfile {
    pub fn load(path: &Path) -> Result<CostProfile> {
        let text =
            std::fs::read_to_string(path).map_err(|e| Error::io(path.display().to_string(), e))?;
        let profile: CostProfile = serde_json::from_str(&text)
            .map_err(|e| Error::InvalidPipeline(format!("cost profile {}: {e}", path.display())))?;
        profile.check()?;
        Ok(profile)
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir.display().to_string(), e))?;
        }
        let text = serde_json::to_string_pretty(self).expect("profiles serialize");
        std::fs::write(path, text).map_err(|e| Error::io(path.display().to_string(), e))
    }

    /// Reject numbers the cost model cannot use.
    pub fn check(&self) -> Result<()> {
        let bad = |what: String| Err(Error::InvalidPipeline(format!("cost profile: {what}")));
        if self.cpu_threads == 0 {
            return bad("cpu_threads must be at least 1".into());
        }
        let mut numbers = vec![
            ("read_ns", self.read_ns),
            ("decode_ns", self.decode_ns),
            (
                "window_decode_ns",
                self.window_decode_ns.unwrap_or_default(),
            ),
            (
                "scaled_decode_ns",
                self.scaled_decode_ns.unwrap_or_default(),
            ),
            ("decoded_bytes", self.decoded_bytes),
        ];
        for op in &self.ops {
            numbers.push(("ops[].cpu_ns", op.cpu_ns));
            numbers.push(("ops[].bytes_in", op.bytes_in));
            numbers.push(("ops[].bytes_out", op.bytes_out));
            if let Some(g) = op.gpu_ns {
                numbers.push(("ops[].gpu_ns", g));
            }
        }
        if let Some((name, v)) = numbers.iter().find(|(_, v)| !(v.is_finite() && *v >= 0.0)) {
            return bad(format!("{name} = {v} must be a non-negative number"));
        }
        if let Some(g) = &self.gpu {
            if !(g.h2d_gbps > 0.0 && g.h2d_gbps.is_finite()) {
                return bad(format!("gpu.h2d_gbps = {} must be positive", g.h2d_gbps));
            }
        }
        if self.memcpy_gbps.is_nan() || self.memcpy_gbps <= 0.0 {
            return bad(format!(
                "memcpy_gbps = {} must be positive",
                self.memcpy_gbps
            ));
        }
        Ok(())
    }

    /// Whether this profile was measured for this machine, dataset and pipeline.
    pub fn matches(&self, machine: &str, dataset: &str, ops: &[Op]) -> bool {
        self.machine == machine && self.dataset == dataset && self.pipeline == pipeline_key(ops)
    }
}

/// The cost profile for `ops` over `source`: the file `given` (checked to describe as many
/// operators), else the one cached under `cache_dir` for this machine, dataset and pipeline,
/// else a fresh measurement on 48 samples (then cached). Says on stderr which it used.
pub fn for_pipeline(
    source: &dyn Source,
    decoder: &Decoder,
    ops: &[Op],
    given: Option<&Path>,
    cache_dir: &Path,
) -> Result<CostProfile> {
    if let Some(path) = given {
        let profile = CostProfile::load(path)?;
        if profile.ops.len() != ops.len() {
            return Err(Error::InvalidPipeline(format!(
                "{}: a profile for {} operators, but the pipeline has {}",
                path.display(),
                profile.ops.len(),
                ops.len()
            )));
        }
        return Ok(profile);
    }
    let machine = machine_name();
    let cached = cache_path(cache_dir, &machine, &source.describe(), ops);
    if let Ok(p) = CostProfile::load(&cached) {
        if p.matches(&machine, &source.describe(), ops) {
            eprintln!("cost profile: {} (cached)", cached.display());
            return Ok(p);
        }
    }
    let gpu = ProfileGpu::open();
    eprintln!(
        "profiling {} operators on 48 samples{}...",
        ops.len(),
        gpu.as_ref()
            .map_or(String::new(), |g| format!(" (and on {})", g.describe()))
    );
    let p = match decoder {
        Decoder::Image(_) => measure(source, ops, 48, gpu.as_ref())?,
        Decoder::Audio(d) => measure_audio(source, d, ops, 48, gpu.as_ref())?,
        Decoder::Text(d) => measure_text(source, d, ops, 48, gpu.as_ref())?,
    };
    p.save(&cached)?;
    eprintln!("cost profile: {} (measured)", cached.display());
    Ok(p)
}

/// Part of the cache key: a profiler that measures differently never reuses an older one's
/// cached profiles (2: speech operators timed as the executor fuses them; 3: token operators
/// timed on the GPU; 4: window and DCT-scaled decodes timed).
const PROFILER_VERSION: u32 = 4;

/// Where measured profiles are cached: one file per (machine, dataset, pipeline).
pub fn cache_path(dir: &Path, machine: &str, dataset: &str, ops: &[Op]) -> PathBuf {
    let key = format!(
        "{PROFILER_VERSION}\n{machine}\n{dataset}\n{}",
        pipeline_key(ops)
    );
    dir.join(format!(
        "profile-{:016x}.json",
        twox_hash::XxHash3_64::oneshot(key.as_bytes())
    ))
}

/// Measure `ops` over the first `samples` samples of `source`: CPU time of each step on this
/// thread, bytes in and out, and — when `gpu` is given — each operator's kernel time on a batch.
pub fn measure(
    source: &dyn Source,
    ops: &[Op],
    samples: usize,
    gpu: Option<&ProfileGpu>,
) -> Result<CostProfile> {
    let n = samples.min(source.len()).max(1);
    let decoder = DecodeImage::default();
    let mut bytes = Vec::new();
    let mut sums = Sums::new(n, ops.len());
    // Per operator, the batch of inputs it saw and their parameters (for the GPU timings).
    let mut inputs: Vec<Vec<Image>> = vec![Vec::new(); ops.len()];
    let mut params: Vec<Vec<Vec<OpParams>>> = vec![Vec::new(); ops.len()];
    let mut scratch = Scratch::default();
    // A leading crop the executor would push into decode: its window decodes are timed too.
    let crop = crate::exec::crop_into_decode(ops, ops.len(), true, false);
    let (mut window_ns, mut scaled_ns) = (0.0, 0.0);
    // Warm up caches, allocators and the resizer's buffers on a few samples first, so the
    // measured samples run as they do in a steady run.
    for index in 0..n.min(8) as u64 {
        if source.read(index, &mut bytes).is_ok() {
            let mut image = Image::default();
            if decoder.decode(&bytes, &mut image).is_ok() {
                for (i, op) in ops.iter().filter(|op| !op.produces_tensor()).enumerate() {
                    let mut rng = SampleRng::new(0, 0, index, i as u32 + 1);
                    if op.run_image(&mut rng, &mut image, &mut scratch).is_err() {
                        break; // the measured pass reports it
                    }
                }
            }
        }
    }
    for index in 0..n as u64 {
        let t = Instant::now();
        source
            .read(index, &mut bytes)
            .map_err(|e| Error::Worker(format!("profiling sample {index}: {e}")))?;
        sums.read_ns += t.elapsed().as_nanos() as f64;
        let t = Instant::now();
        let mut image = Image::default();
        decoder
            .decode(&bytes, &mut image)
            .map_err(|e| Error::Worker(format!("profiling sample {index}: DecodeImage: {e}")))?;
        sums.decode_ns += t.elapsed().as_nanos() as f64;
        sums.decoded_bytes += image.data.len() as f64;
        if let Some(crop) = crop {
            let mut part = Image::default();
            for (approx, total) in [(false, &mut window_ns), (true, &mut scaled_ns)] {
                let t = Instant::now();
                let rng = || SampleRng::new(0, 0, index, 1);
                decoder
                    .decode_region(&bytes, &mut part, |w, h| {
                        crop.plan(ops, rng, (w, h), approx).map(|p| p.region)
                    })
                    .map_err(|e| profiling_failed(index, "DecodeImage", e))?;
                *total += t.elapsed().as_nanos() as f64;
            }
        }
        for (i, op) in ops.iter().enumerate() {
            let mut rng = SampleRng::new(0, 0, index, i as u32 + 1);
            if gpu.is_some() {
                inputs[i].push(image.clone());
            }
            sums.bytes_in[i] += image.data.len() as f64;
            let t = Instant::now();
            let p = if op.produces_tensor() {
                let write = TensorWrite::for_op(op).expect("tensor op");
                let mut out = vec![0u8; image.data.len() * write.dtype.size()];
                op.write_tensor(&image, false, &mut out);
                sums.bytes_out[i] += out.len() as f64;
                OpParams::None
            } else {
                let p = op
                    .run_image(&mut rng, &mut image, &mut scratch)
                    .map_err(|e| {
                        Error::Worker(format!("profiling sample {index}: {}: {e}", op.name()))
                    })?;
                sums.bytes_out[i] += image.data.len() as f64;
                p
            };
            sums.cpu_ns[i] += t.elapsed().as_nanos() as f64;
            params[i].push(vec![p]);
        }
    }
    let mut profile = sums.profile(source, ops, gpu, |i, op| {
        // Operators without a GPU kernel keep `gpu_ns: None`: never placed there.
        if !op.spec().runs_on_gpu() {
            return Ok(None);
        }
        let gpu = gpu.expect("GPU times are asked for with a GPU");
        Ok(Some(
            time_on_gpu(gpu, op, &inputs[i], &params[i])? / n as f64,
        ))
    })?;
    if crop.is_some() {
        profile.window_decode_ns = Some(window_ns / n as f64);
        profile.scaled_decode_ns = Some(scaled_ns / n as f64);
    }
    Ok(profile)
}

/// What a profiler adds up over its `n` measured samples.
/// A sample the profiler could not run.
pub(super) fn profiling_failed(index: u64, what: &str, e: String) -> Error {
    Error::Worker(format!("profiling sample {index}: {what}: {e}"))
}

pub(super) struct Sums {
    pub n: usize,
    pub read_ns: f64,
    pub decode_ns: f64,
    pub decoded_bytes: f64,
    /// Per operator.
    pub cpu_ns: Vec<f64>,
    pub bytes_in: Vec<f64>,
    pub bytes_out: Vec<f64>,
}

impl Sums {
    /// Sums over the first `samples` samples of `source` (at least one) for `ops` operators.
    pub fn over(source: &dyn Source, samples: usize, ops: usize) -> Self {
        Self::new(samples.min(source.len()).max(1), ops)
    }

    pub fn new(n: usize, ops: usize) -> Self {
        Sums {
            n,
            read_ns: 0.0,
            decode_ns: 0.0,
            decoded_bytes: 0.0,
            cpu_ns: vec![0.0; ops],
            bytes_in: vec![0.0; ops],
            bytes_out: vec![0.0; ops],
        }
    }

    /// Read sample `index` into `bytes`, timed.
    pub fn read(&mut self, source: &dyn Source, index: u64, bytes: &mut Vec<u8>) -> Result<()> {
        let t = Instant::now();
        source
            .read(index, bytes)
            .map_err(|e| profiling_failed(index, "read", e.to_string()))?;
        self.read_ns += t.elapsed().as_nanos() as f64;
        Ok(())
    }

    /// The profile: per-sample means, and with a GPU each operator's time per sample there from
    /// `gpu_ns(index, op)` (None: no kernel).
    pub fn profile(
        self,
        source: &dyn Source,
        ops: &[Op],
        gpu: Option<&ProfileGpu>,
        mut gpu_ns: impl FnMut(usize, &Op) -> Result<Option<f64>>,
    ) -> Result<CostProfile> {
        let per = |v: f64| v / self.n as f64;
        let mut costs = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            costs.push(OpCost {
                op: format!("{op:?}"),
                cpu_ns: per(self.cpu_ns[i]),
                bytes_in: per(self.bytes_in[i]),
                bytes_out: per(self.bytes_out[i]),
                gpu_ns: if gpu.is_some() { gpu_ns(i, op)? } else { None },
            });
        }
        Ok(CostProfile {
            machine: machine_name(),
            dataset: source.describe(),
            pipeline: pipeline_key(ops),
            cpu_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            samples_measured: self.n,
            dataset_len: source.len(),
            read_ns: per(self.read_ns),
            decode_ns: per(self.decode_ns),
            window_decode_ns: None,
            scaled_decode_ns: None,
            decoded_bytes: per(self.decoded_bytes),
            memcpy_gbps: memcpy_gbps(),
            ops: costs,
            gpu: gpu_side(gpu)?,
        })
    }
}

/// The profile's GPU side: the device, its measured upload bandwidth.
fn gpu_side(gpu: Option<&ProfileGpu>) -> Result<Option<GpuCost>> {
    let Some(gpu) = gpu else { return Ok(None) };
    Ok(Some(GpuCost {
        backend: gpu.backend().into(),
        name: gpu.describe(),
        h2d_gbps: gpu
            .upload_gbps(64 << 20)
            .map_err(|e| Error::Worker(format!("profiling the upload: {e}")))?,
        // Both backends hand batches back in host memory today.
        reads_back: true,
        software: gpu.software(),
    }))
}

/// `run` once to warm up, then the best of three timed runs, ns.
pub(super) fn best_of_three(
    run: impl Fn() -> std::result::Result<(), String>,
) -> std::result::Result<f64, String> {
    run()?;
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        run()?;
        best = best.min(t.elapsed().as_nanos() as f64);
    }
    Ok(best)
}

/// One operator on the GPU over the whole measured batch (best of 3 runs after a warm-up), ns.
fn time_on_gpu(
    gpu: &ProfileGpu,
    op: &Op,
    images: &[Image],
    params: &[Vec<OpParams>],
) -> Result<f64> {
    let (stages, write) = stages_for(std::slice::from_ref(op), params);
    let fail =
        |e: String| Error::Worker(format!("profiling {} on {}: {e}", op.name(), gpu.backend()));
    let tensor = op.produces_tensor().then_some(&write);
    let run = || -> std::result::Result<(), String> {
        match (gpu, tensor) {
            (ProfileGpu::Wgpu(ctx), Some(write)) => {
                let bytes: usize = images
                    .iter()
                    .map(|i| i.data.len() * write.dtype.size())
                    .sum();
                let mut out = vec![0u8; bytes];
                ctx.run_to_tensor(images, &stages, write, &mut out)
            }
            (ProfileGpu::Wgpu(ctx), None) => ctx.run_to_images(images, &stages).map(|_| ()),
            (ProfileGpu::Cuda(dev), _) => {
                let batch = encode_batch(images, &stages, tensor)?;
                dev.run_encoded(&batch).map(|_| ())
            }
        }
    };
    best_of_three(run).map_err(fail)
}

/// A GPU the profiler times operators on.
pub enum ProfileGpu {
    Wgpu(Box<WgpuContext>),
    Cuda(Box<CudaDevice>),
}

impl ProfileGpu {
    /// A CUDA device if one opens, else a wgpu adapter, else None (as `Placement::Auto` picks).
    pub fn open() -> Option<ProfileGpu> {
        crate::backend::cuda::default_ordinal()
            .and_then(CudaDevice::open)
            .map(|d| ProfileGpu::Cuda(Box::new(d)))
            .or_else(|_| WgpuContext::new().map(|c| ProfileGpu::Wgpu(Box::new(c))))
            .ok()
    }

    pub fn backend(&self) -> &'static str {
        match self {
            ProfileGpu::Wgpu(_) => "wgpu",
            ProfileGpu::Cuda(_) => "cuda",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            ProfileGpu::Wgpu(c) => c.describe(),
            ProfileGpu::Cuda(d) => d.describe().to_string(),
        }
    }

    /// The backend as the executor drives it.
    pub fn runner(&self) -> &dyn crate::backend::GpuRunner {
        match self {
            ProfileGpu::Wgpu(c) => c.as_ref(),
            ProfileGpu::Cuda(d) => d.as_ref(),
        }
    }

    fn software(&self) -> bool {
        matches!(self, ProfileGpu::Wgpu(c) if c.is_software())
    }

    fn upload_gbps(&self, bytes: u64) -> std::result::Result<f64, String> {
        match self {
            ProfileGpu::Wgpu(c) => c.upload_gbps(bytes),
            ProfileGpu::Cuda(d) => d.upload_gbps(bytes),
        }
    }
}

/// Host memcpy bandwidth over a 64 MiB copy, GB/s.
fn memcpy_gbps() -> f64 {
    let src = vec![1u8; 64 << 20];
    let mut dst = vec![0u8; 64 << 20];
    dst.copy_from_slice(&src); // fault the pages in first
    let t = Instant::now();
    dst.copy_from_slice(&src);
    std::hint::black_box(&dst);
    src.len() as f64 / t.elapsed().as_nanos().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gen::{encode_jpeg, render_image};
    use crate::ops::{Normalize, RandomHorizontalFlip, RandomResizedCrop};
    use crate::source::InMemory;

    fn source(n: u64) -> InMemory {
        InMemory::new(
            (0..n)
                .map(|i| (encode_jpeg(&render_image(3, i), 85), i as i64))
                .collect(),
        )
    }

    fn ops() -> Vec<Op> {
        vec![
            RandomResizedCrop::new(32).into(),
            RandomHorizontalFlip::new(0.5).into(),
            Normalize::imagenet().into(),
        ]
    }

    #[test]
    fn measured_profile_has_the_pipelines_shape_and_round_trips_through_json() {
        let src = source(6);
        let ops = ops();
        let p = measure(&src, &ops, 4, None).unwrap();
        assert_eq!(p.ops.len(), 3);
        assert_eq!(p.samples_measured, 4);
        assert_eq!(p.dataset_len, 6);
        // Fixed-size crop: exactly 32×32×3 bytes out; normalize: 4 bytes per value.
        assert_eq!(p.ops[0].bytes_out, 32.0 * 32.0 * 3.0);
        assert_eq!(p.ops[2].bytes_out, 32.0 * 32.0 * 3.0 * 4.0);
        assert!(p.decode_ns > 0.0 && p.ops.iter().all(|o| o.cpu_ns > 0.0));
        assert!(p.gpu.is_none() && p.ops.iter().all(|o| o.gpu_ns.is_none()));
        assert!(p.matches(&machine_name(), &src.describe(), &ops));
        assert!(!p.matches(&machine_name(), &src.describe(), &ops[..2]));

        let dir = tempfile::tempdir().unwrap();
        let path = cache_path(dir.path(), &p.machine, &p.dataset, &ops);
        assert_ne!(
            path,
            cache_path(dir.path(), &p.machine, &p.dataset, &ops[..2])
        );
        p.save(&path).unwrap();
        assert_eq!(CostProfile::load(&path).unwrap(), p);
    }

    #[test]
    fn profiles_with_unusable_numbers_are_rejected_with_the_field_named() {
        let mut p = measure(&source(2), &ops(), 2, None).unwrap();
        p.ops[1].cpu_ns = -1.0;
        let err = p.check().unwrap_err().to_string();
        assert!(err.contains("ops[].cpu_ns"), "{err}");
        p.ops[1].cpu_ns = 1.0;
        p.gpu = Some(GpuCost {
            backend: "cuda".into(),
            name: "x".into(),
            h2d_gbps: 0.0,
            reads_back: false,
            software: false,
        });
        assert!(p.check().unwrap_err().to_string().contains("h2d_gbps"));
        p.gpu = None;
        p.cpu_threads = 0;
        assert!(p.check().is_err());
    }
}
