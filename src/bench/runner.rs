//! Runs a workload for some epochs and measures it.

use super::report::{BenchReport, StageRow};
use super::sys::{cpu_seconds, peak_rss_bytes};
use super::workloads::Workload;
use crate::error::Result;
use crate::pipeline::{ErrorPolicy, Pipeline, Settings};
use crate::source::Source;
use std::sync::Arc;
use std::time::Instant;
use xxhash_rust::xxh3::Xxh3;

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub workload: Workload,
    pub threads: usize,
    pub batch_size: usize,
    pub epochs: u32,
    pub seed: u64,
    pub prefetch: usize,
    pub fuse: bool,
    pub policy: ErrorPolicy,
    /// Show a progress bar on stderr.
    pub progress: bool,
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
        policy: opts.policy,
        fuse: opts.fuse,
    };
    let pipeline = opts
        .workload
        .add_ops(Pipeline::builder_shared(source.clone()).settings(settings))
        .build()?;

    let total_batches = pipeline.batches_per_epoch() * u64::from(opts.epochs);
    let bar = if opts.progress {
        indicatif::ProgressBar::new(total_batches)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {pos}/{len} batches, {per_sec} ({eta} left)",
        )
        .unwrap()
        .progress_chars("=> "),
    );
    bar.set_message(opts.workload.name());

    let before = pipeline.stats();
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let mut hasher = Xxh3::new();
    let mut latencies_ms = Vec::with_capacity(total_batches as usize);
    let mut images = 0u64;
    for epoch in 0..opts.epochs {
        let mut batches = pipeline.epoch(epoch)?;
        loop {
            let waited = Instant::now();
            let Some(batch) = batches.next() else { break };
            let batch = batch?;
            latencies_ms.push(waited.elapsed().as_secs_f64() * 1e3);
            hasher.update(batch.bytes());
            for label in &batch.labels {
                hasher.update(&label.to_le_bytes());
            }
            images += batch.len() as u64;
            bar.inc(1);
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    bar.finish_and_clear();
    let stats = pipeline.stats().since(&before);

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
    latencies_ms.sort_by(f64::total_cmp);
    let pct = |p: f64| -> f64 {
        if latencies_ms.is_empty() {
            return 0.0;
        }
        let i = ((latencies_ms.len() - 1) as f64 * p).round() as usize;
        latencies_ms[i]
    };
    Ok(BenchReport {
        workload: opts.workload.name().to_string(),
        source: source.describe(),
        plan: pipeline.describe(),
        threads: opts.threads,
        batch_size: opts.batch_size,
        epochs: opts.epochs,
        seed: opts.seed,
        images,
        skipped: stats.skipped,
        wall_seconds: wall,
        images_per_second: images as f64 / wall,
        cpu_seconds_per_image: cpu / images.max(1) as f64,
        batch_latency_p50_ms: pct(0.5),
        batch_latency_p99_ms: pct(0.99),
        peak_rss_mib: peak_rss_bytes() as f64 / (1024.0 * 1024.0),
        buffer_allocations: stats.buffer_allocations,
        checksum: format!("{:016x}", hasher.digest()),
        stages,
    })
}
