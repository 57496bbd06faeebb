//! Runs a workload for some epochs and measures it.

use super::checksum::Checksum;
use super::device_feed::DeviceConsumer;
use super::report::{BenchReport, StageRow, TimelinePoint};
use super::sys::{cpu_seconds, peak_rss_bytes};
use super::verify::Verification;
use super::workloads::Workload;
use crate::error::Result;
use crate::optimizer::{CostProfile, Goal};
use crate::pipeline::{ErrorPolicy, Pipeline, Settings};
use crate::placement::Placement;
use crate::source::Source;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub workload: Workload,
    pub threads: usize,
    pub batch_size: usize,
    pub epochs: u32,
    pub seed: u64,
    pub prefetch: usize,
    pub fuse: bool,
    /// Approximate decode allowed (`--allow-approx`: DCT-scaled decode of a shrinking crop).
    pub allow_approx: bool,
    /// Prefix cache budget in MiB (0: off).
    pub cache_mib: usize,
    /// Padded (speech) batches: time padded to a multiple of this (`--pad-multiple`).
    pub pad_multiple: usize,
    pub policy: ErrorPolicy,
    /// Simulated training step: the consumer holds each batch this long before asking for the
    /// next (0: consume as fast as possible).
    pub train_step_ms: f64,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Where operators run (`--backend`).
    pub placement: Placement,
    /// Compare every batch with the same pipeline run on the CPU (`--verify`).
    pub verify: bool,
    /// Plan the run with the optimizer from this profile, for this goal (`--optimize`).
    pub optimize: Option<(CostProfile, Goal)>,
    /// Deliver batches in CUDA device memory and consume them as a trainer would
    /// (`--backend cuda`); host batches when no CUDA device opens.
    pub device_batches: bool,
    /// The CUDA device ordinal (`--device`; None: `LOCAL_RANK`, else 0).
    pub cuda_device: Option<usize>,
    /// Write the first batch here as `.npy` files and `samples.txt` (`--dump`).
    pub dump: Option<std::path::PathBuf>,
    /// Text workloads: the tokenizer and embedding table (`--tokenizer`, `--embeddings`).
    pub text: super::TextAssets,
    /// Length bucketing in windows of this many batches (`--bucket`; 0: off).
    pub bucket_windows: usize,
    /// Sharded data: shuffle within windows of this many shards (`--shard-window`; 0: all).
    pub shard_window: usize,
    /// This process's share: rank `.0` of `.1` (`--rank`, `--world`).
    pub rank: (usize, usize),
    /// Start where a saved run stopped (`--resume`).
    pub resume: Option<crate::state::PipelineState>,
    /// Stop after this many batches and write the state to `save_state`
    /// (`--stop-after-batches`, `--save-state`).
    pub stop_after: Option<(u64, Option<std::path::PathBuf>)>,
    /// Hash each batch on its own too (`batch_checksums`; `--json`): a second pass over
    /// every batch on the consumer's thread, so only when asked for.
    pub batch_checksums: bool,
}

/// When each batch arrived and how long the consumer waited for it.
struct Arrival {
    epoch: u32,
    /// Seconds since the run started, when the batch was handed over.
    at: f64,
    waited: f64,
    images: u64,
}

/// Run the benchmark over `source`.
pub fn run(source: Arc<dyn Source>, opts: &BenchOptions) -> Result<BenchReport> {
    let settings = Settings {
        batch_size: opts.batch_size,
        drop_last: false,
        shuffle: opts.workload.shuffles(),
        seed: opts.seed,
        threads: opts.threads,
        prefetch: opts.prefetch,
        max_prefetch: 0,
        policy: opts.policy,
        fuse: opts.fuse,
        approx_decode: opts.allow_approx,
        cache_bytes: opts.cache_mib << 20,
        pad_multiple: opts.pad_multiple,
        bucket_windows: opts.bucket_windows,
        shard_window: opts.shard_window,
        rank: opts.rank.0,
        world: opts.rank.1,
        pad_id: opts.workload.batch_defaults(&opts.text).pad_id,
        ..Settings::default()
    };
    let builder = |placement: Placement| {
        let b = Pipeline::builder_shared(source.clone())
            .settings(settings.clone())
            .placement(placement);
        let b = match opts.cuda_device {
            Some(n) => b.cuda_device(n),
            None => b,
        };
        opts.workload.add_ops_with(b, &opts.text)
    };
    let build = |placement: Placement| builder(placement).build();
    let (pipeline, predicted) = match &opts.optimize {
        None => (
            builder(opts.placement)
                .device_batches(opts.device_batches)
                .build()?,
            None,
        ),
        Some((profile, goal)) => {
            let (b, optimized) = builder(Placement::Cpu)
                .device_batches(opts.device_batches)
                .optimize(profile, goal)?;
            (b.build()?, Some(optimized.predicted))
        }
    };
    // The CPU reference for --verify, and the size of one u8 step in the output's units.
    let reference = if opts.verify {
        pipeline.check_gpu_outputs(true);
        Some(build(Placement::Cpu)?)
    } else {
        None
    };
    let u8_step = pipeline
        .ops()
        .last()
        .and_then(|op| op.image_op()?.tensor_write())
        .map_or(1.0, |w| f64::from(w.scale.into_iter().fold(0f32, f32::max)));
    let mut verification = Verification {
        features: pipeline.decodes_audio(),
        ..Verification::default()
    };

    // A packed epoch's batch count is known only once it is tokenized: a spinner then.
    let total_batches = pipeline
        .batches_per_epoch()
        .map(|n| n * u64::from(opts.epochs));
    let bar = match (opts.progress, total_batches) {
        (false, _) => indicatif::ProgressBar::hidden(),
        (true, Some(n)) => indicatif::ProgressBar::new(n),
        (true, None) => indicatif::ProgressBar::new_spinner(),
    };
    let template = match total_batches {
        Some(_) => "{spinner} {msg} [{bar:30}] {pos}/{len} batches, {per_sec} ({eta} left)",
        None => "{spinner} {msg} {pos} batches, {per_sec}",
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap()
            .progress_chars("=> "),
    );
    bar.set_message(opts.workload.name());

    let before = pipeline.stats();
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let step = Duration::from_secs_f64(opts.train_step_ms.max(0.0) / 1e3);
    let mut hasher = Checksum::new();
    let mut consumer = if pipeline.device_batches() {
        Some(DeviceConsumer::new(&pipeline, opts.train_step_ms)?)
    } else {
        None
    };
    // Device batches are hashed only when --verify copies them back anyway.
    let mut hashed = true;
    let mut arrivals = Vec::with_capacity(total_batches.unwrap_or(0) as usize);
    // (valid frames, frames including padding) over padded batches.
    let mut padded = (0u64, 0u64);
    let mut batch_checksums = Vec::new();
    let first_epoch = opts.resume.as_ref().map_or(0, |s| s.epoch);
    'epochs: for epoch in first_epoch..opts.epochs {
        let resumed = opts.resume.as_ref().filter(|s| s.epoch == epoch);
        let mut batches = match resumed {
            Some(state) => pipeline.resume(state)?,
            None => pipeline.epoch(epoch)?,
        };
        let mut last_document = None;
        let mut cpu_batches = match &reference {
            Some(r) => Some(r.epoch_from(epoch, batches.next_index())?),
            None => None,
        };
        loop {
            let asked = Instant::now();
            let Some(batch) = batches.next() else { break };
            let batch = batch?;
            let now = Instant::now();
            // A packed batch may start with the document the previous one ended in: count
            // each document once.
            let continued = !batch.cu_seqlens.is_empty()
                && !batch.sample_indices.is_empty()
                && batch.sample_indices.first() == last_document.as_ref();
            last_document = batch.sample_indices.last().copied();
            arrivals.push(Arrival {
                epoch,
                at: (now - start).as_secs_f64(),
                waited: (now - asked).as_secs_f64(),
                images: batch.len() as u64 - u64::from(continued),
            });
            // A device batch is copied back when it is checked or dumped (and only then
            // hashed): `on_host` is the batch as host memory either way.
            let dumping = opts.dump.is_some() && epoch == 0 && arrivals.len() == 1;
            let copy = match reference.is_some() || dumping {
                true => batch.copied_to_host()?,
                false => None,
            };
            let on_host = match (&copy, batch.device()) {
                (Some(c), _) => Some(c),
                (None, None) => Some(&batch),
                (None, Some(_)) => None,
            };
            if let Some(cpu) = cpu_batches.as_mut() {
                let want = cpu.next().ok_or_else(|| {
                    crate::Error::Worker("verify: the CPU run ended early".into())
                })??;
                verification.add(on_host.expect("copied back to verify"), &want, u8_step)?;
            }
            match on_host.filter(|_| reference.is_some() || batch.device().is_none()) {
                Some(b) => {
                    hash_batch(&mut hasher, b);
                    if opts.batch_checksums {
                        let mut one = Checksum::new();
                        hash_batch(&mut one, b);
                        batch_checksums.push(one.hex());
                    }
                }
                None => hashed = false,
            }
            if let (Some(dir), Some(b), true) = (&opts.dump, on_host, dumping) {
                let files = super::dump_batch(dir, b, source.as_ref(), pipeline.output())?;
                eprintln!(
                    "first batch written to {}: {}",
                    dir.display(),
                    files.join(", ")
                );
            }
            let width = batch
                .shape()
                .and_then(|shape| pipeline.output().padded_width(shape));
            if let (false, Some(longest)) = (batch.lengths.is_empty(), width) {
                // Valid positions vs all positions along the padded axis, per sample.
                let longest = longest as u64;
                padded.0 += batch.lengths.iter().map(|&l| l as u64).sum::<u64>();
                padded.1 += longest * batch.lengths.len() as u64;
            }
            bar.inc(1);
            if let (Some(c), Some(d)) = (consumer.as_mut(), batch.device()) {
                c.consume(d)?;
            } else if !step.is_zero() {
                // The training step holds the batch; the pipeline keeps prefetching meanwhile.
                std::thread::sleep(step);
            }
            if let Some((stop, path)) = &opts.stop_after {
                if arrivals.len() as u64 >= *stop {
                    let state = batches.state();
                    if let Some(path) = path {
                        state.save(path)?;
                        eprintln!(
                            "stopped after {stop} batches at epoch {} batch {}; state in {}",
                            state.epoch,
                            state.position,
                            path.display()
                        );
                    }
                    break 'epochs;
                }
            }
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    bar.finish_and_clear();
    let stats = pipeline.stats().since(&before);
    let images: u64 = arrivals.iter().map(|a| a.images).sum();
    let phases = Phases::split(&arrivals, opts.epochs);
    let device_feed = match consumer {
        Some(c) => {
            let steady = arrivals.len() - phases.warmup_batches;
            let fed_ms = median_interval_ms(&arrivals[phases.warmup_batches..]);
            Some(c.finish(&pipeline, opts.train_step_ms, fed_ms, steady)?)
        }
        None => None,
    };

    let stage_total: u64 = stats.stages.iter().map(|s| s.total_ns).sum();
    let stages = stats
        .stages
        .iter()
        .map(|s| StageRow {
            name: s.name.clone(),
            calls: s.calls,
            us_per_call: s.ns_per_call() / 1e3,
            share: s.total_ns as f64 / stage_total.max(1) as f64,
        })
        .collect();
    let mut latencies_ms: Vec<f64> = arrivals.iter().map(|a| a.waited * 1e3).collect();
    latencies_ms.sort_by(f64::total_cmp);
    let pct = |p: f64| -> f64 {
        if latencies_ms.is_empty() {
            return 0.0;
        }
        let i = ((latencies_ms.len() - 1) as f64 * p).round() as usize;
        latencies_ms[i]
    };
    let waited: f64 = arrivals.iter().map(|a| a.waited).sum();
    Ok(BenchReport {
        workload: opts.workload.name().to_string(),
        source: source.describe(),
        plan: pipeline.describe(),
        placement: pipeline.placement_reason().to_string(),
        verify: reference.map(|_| verification),
        predicted,
        threads: opts.threads,
        batch_size: opts.batch_size,
        epochs: opts.epochs,
        seed: opts.seed,
        images,
        skipped: stats.skipped,
        wall_seconds: wall,
        images_per_second: images as f64 / wall,
        train_step_ms: opts.train_step_ms,
        stall_fraction: waited / wall.max(f64::MIN_POSITIVE),
        warmup_batches: phases.warmup_batches,
        warmup_end_s: phases.warmup_end,
        warmup_images_per_second: phases.warmup_rate,
        steady_images_per_second: phases.steady_rate,
        timeline: timeline(&arrivals),
        cpu_seconds_per_image: cpu / images.max(1) as f64,
        batch_latency_p50_ms: pct(0.5),
        batch_latency_p99_ms: pct(0.99),
        peak_rss_mib: peak_rss_bytes() as f64 / (1024.0 * 1024.0),
        buffer_allocations: stats.buffer_allocations,
        prefetch_depth: stats.prefetch_depth,
        prefetch_adjustments: stats.prefetch_adjustments,
        cache_hits: stats.cache_hits,
        window_decodes: stats.window_decodes,
        scaled_decodes: stats.scaled_decodes,
        cache_mib: stats.cache_bytes as f64 / (1024.0 * 1024.0),
        padding_fraction: (padded.1 > 0).then(|| 1.0 - padded.0 as f64 / padded.1 as f64),
        audio_seconds_per_second: (stats.audio_seconds > 0.0).then(|| stats.audio_seconds / wall),
        tokens_per_second: (stats.tokens > 0).then(|| stats.tokens as f64 / wall),
        checksum: if hashed {
            hasher.hex()
        } else {
            "not computed (device batches stay on the GPU; --verify copies them back)".into()
        },
        batch_checksums: if hashed { batch_checksums } else { Vec::new() },
        device_feed,
        stages,
    })
}

/// Add one batch as delivered (in host memory) to `h`: the sample bytes, the labels, and for
/// masked-LM and packed batches their token labels and boundaries.
fn hash_batch(h: &mut Checksum, batch: &crate::Batch) {
    h.add_bytes(batch.bytes());
    h.add_labels(&batch.labels);
    if let Some(t) = &batch.token_labels {
        h.add_bytes(t.bytes());
    }
    h.add_bytes(&batch.cu_seqlens_bytes());
}

/// Warm-up (the first epoch when there are several, else the first tenth of the batches) and
/// steady state, each with its own rate.
struct Phases {
    warmup_batches: usize,
    warmup_end: f64,
    warmup_rate: f64,
    steady_rate: f64,
}

impl Phases {
    fn split(arrivals: &[Arrival], epochs: u32) -> Phases {
        let n = arrivals.len();
        let warmup_batches = if epochs > 1 {
            arrivals.iter().filter(|a| a.epoch == 0).count()
        } else {
            n.div_ceil(10)
        }
        .min(n);
        let rate = |from: f64, part: &[Arrival]| {
            let images: u64 = part.iter().map(|a| a.images).sum();
            let until = part.last().map_or(from, |a| a.at);
            if until > from {
                images as f64 / (until - from)
            } else {
                0.0
            }
        };
        let (warm, steady) = arrivals.split_at(warmup_batches);
        let warm_end = warm.last().map_or(0.0, |a| a.at);
        Phases {
            warmup_batches,
            warmup_end: warm_end,
            warmup_rate: rate(0.0, warm),
            steady_rate: rate(warm_end, steady),
        }
    }
}

/// The median time between consecutive batches of the same epoch, ms: the steady step
/// interval, untouched by the gap where one epoch drains and the next starts filling.
fn median_interval_ms(arrivals: &[Arrival]) -> f64 {
    let mut gaps: Vec<f64> = arrivals
        .windows(2)
        .filter(|w| w[0].epoch == w[1].epoch)
        .map(|w| (w[1].at - w[0].at) * 1e3)
        .collect();
    crate::bench::median(&mut gaps)
}

/// Images/s over time: consecutive batches grouped into up to 40 windows of at least 3 batches
/// (so batch-sized bursts do not read as spikes), each point at its window's end.
fn timeline(arrivals: &[Arrival]) -> Vec<TimelinePoint> {
    let n = arrivals.len();
    let window = n.div_ceil(40).max(3.min(n)).max(1);
    let mut points = Vec::new();
    let mut since = 0.0;
    for chunk in arrivals.chunks(window) {
        let end = chunk.last().unwrap().at;
        let images: u64 = chunk.iter().map(|a| a.images).sum();
        if end > since {
            points.push(TimelinePoint {
                t_s: end,
                images_per_second: images as f64 / (end - since),
            });
        }
        since = end;
    }
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrivals(spec: &[(u32, f64, u64)]) -> Vec<Arrival> {
        spec.iter()
            .map(|&(epoch, at, images)| Arrival {
                epoch,
                at,
                waited: 0.0,
                images,
            })
            .collect()
    }

    #[test]
    fn warm_up_is_the_first_epoch_when_there_are_several() {
        // Epoch 0: 2 batches of 10 by t=2 s (10/s); epoch 1: 3 batches of 10 from t=2 to t=3.
        let a = arrivals(&[
            (0, 1.0, 10),
            (0, 2.0, 10),
            (1, 2.5, 10),
            (1, 2.8, 10),
            (1, 3.0, 10),
        ]);
        let p = Phases::split(&a, 2);
        assert_eq!(p.warmup_batches, 2);
        assert!((p.warmup_rate - 10.0).abs() < 1e-9);
        assert!((p.steady_rate - 30.0).abs() < 1e-9);
        // One epoch: the first tenth (rounded up) is warm-up.
        let p = Phases::split(&a, 1);
        assert_eq!(p.warmup_batches, 1);
    }

    #[test]
    fn the_fed_step_interval_is_the_median_within_epochs() {
        // 10 ms steps, one slow one, and a 500 ms gap between epochs that must not count.
        let a = arrivals(&[
            (1, 1.000, 8),
            (1, 1.010, 8),
            (1, 1.020, 8),
            (1, 1.080, 8),
            (1, 1.090, 8),
            (2, 1.590, 8),
            (2, 1.600, 8),
        ]);
        assert!((median_interval_ms(&a) - 10.0).abs() < 1e-6);
        assert_eq!(median_interval_ms(&a[..1]), 0.0);
    }

    #[test]
    fn timeline_windows_account_for_every_image() {
        // 6 batches, windows of 3: 12 images by t=0.5 (24/s), then 24 images by t=1.5 (24/s).
        let a = arrivals(&[
            (0, 0.1, 4),
            (0, 0.2, 4),
            (0, 0.5, 4),
            (0, 0.9, 8),
            (0, 1.0, 8),
            (0, 1.5, 8),
        ]);
        let t = timeline(&a);
        assert_eq!(t.len(), 2);
        assert!((t[0].t_s - 0.5).abs() < 1e-12 && (t[1].t_s - 1.5).abs() < 1e-12);
        assert!((t[0].images_per_second - 24.0).abs() < 1e-9);
        assert!((t[1].images_per_second - 24.0).abs() < 1e-9);
        assert!(timeline(&[]).is_empty());
    }
}
