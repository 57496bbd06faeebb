//! The benchmark report: printed as a table for people, or as JSON for scripts.

use serde::Serialize;

/// Time spent in one executor stage (summed over worker threads).
#[derive(Debug, Clone, Serialize)]
pub struct StageRow {
    pub name: String,
    pub calls: u64,
    /// Mean microseconds per call, on one thread.
    pub us_per_call: f64,
    /// Fraction of all stage time.
    pub share: f64,
}

/// Throughput over one window of consecutive batches.
#[derive(Debug, Clone, Serialize)]
pub struct TimelinePoint {
    /// When the window's last batch arrived, seconds since the run started.
    pub t_s: f64,
    pub images_per_second: f64,
}

/// Everything one `sluice bench` run measured. Field names are the JSON schema.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub workload: String,
    pub source: String,
    pub plan: String,
    /// Where the operators ran and why.
    pub placement: String,
    /// `--verify`: the comparison against the CPU run (None without it).
    pub verify: Option<super::Verification>,
    /// `--optimize`: the optimizer's prediction for this run, per batch (None without it).
    pub predicted: Option<crate::optimizer::Cost>,
    pub threads: usize,
    pub batch_size: usize,
    pub epochs: u32,
    pub seed: u64,
    /// Images delivered (all epochs).
    pub images: u64,
    /// Images left out under `--on-error skip`.
    pub skipped: u64,
    pub wall_seconds: f64,
    pub images_per_second: f64,
    /// Simulated training step per batch (0: none).
    pub train_step_ms: f64,
    /// Fraction of wall time the consumer spent waiting for batches (the data stall).
    pub stall_fraction: f64,
    /// Batches counted as warm-up: the first epoch when there are several, else the first tenth.
    pub warmup_batches: usize,
    /// When the last warm-up batch arrived, seconds since the start.
    pub warmup_end_s: f64,
    pub warmup_images_per_second: f64,
    pub steady_images_per_second: f64,
    /// Throughput over time: up to 40 points, each over a window of ≥ 3 consecutive batches.
    pub timeline: Vec<TimelinePoint>,
    /// Process CPU time (user + system) divided by images.
    pub cpu_seconds_per_image: f64,
    /// Time the consumer waited for each batch.
    pub batch_latency_p50_ms: f64,
    pub batch_latency_p99_ms: f64,
    pub peak_rss_mib: f64,
    /// Batch buffers allocated rather than reused (bounded by the prefetch depth).
    pub buffer_allocations: u64,
    /// Prefetch depth at the end, and the adaptive controller's changes to it.
    pub prefetch_depth: u64,
    pub prefetch_adjustments: u64,
    /// Samples served from the prefix cache (`--cache-mib`), and its size at the end.
    pub cache_hits: u64,
    pub cache_mib: f64,
    /// Images decoded by window (crop-aware decode: only the pixels the leading crop reads).
    pub window_decodes: u64,
    /// Images decoded at 1/2, 1/4 or 1/8 scale (`--allow-approx`: DCT-domain scaling).
    pub scaled_decodes: u64,
    /// Padded batches (speech): the share of the delivered tensors that is padding, over the
    /// run (None for image workloads).
    pub padding_fraction: Option<f64>,
    /// Speech workloads: seconds of audio decoded per second of wall time, over the run
    /// (None for image workloads).
    pub audio_seconds_per_second: Option<f64>,
    /// Text workloads: tokens the tokenizer produced per second of wall time, over the run
    /// (None otherwise).
    pub tokens_per_second: Option<f64>,
    /// xxh3-64 over every batch's bytes and labels in order: equal across thread counts.
    pub checksum: String,
    /// xxh3-64 of each batch (bytes, labels, token labels, boundaries), in delivery order: a
    /// resumed run's list equals the tail of an uninterrupted run's.
    pub batch_checksums: Vec<String>,
    /// Device batches (`--backend cuda` with a CUDA device): the trainer-side measurements.
    pub device_feed: Option<super::DeviceFeedReport>,
    pub stages: Vec<StageRow>,
}

impl BenchReport {
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "workload     {}\nsource       {}\nthreads      {}   batch {}   epochs {}   seed {}\n",
            self.workload, self.source, self.threads, self.batch_size, self.epochs, self.seed
        );
        // Speech and text workloads count samples (the JSON keys keep their image names).
        let unit = match super::Workload::from_name(&self.workload) {
            Some(w) if w.is_audio() || w.is_text() => "sample",
            _ => "image",
        };
        s += &format!(
            "{:13}{} in {:.2} s   ({} skipped)\n",
            format!("{unit}s"),
            self.images,
            self.wall_seconds,
            self.skipped
        );
        s += &format!(
            "{:13}{:.1}   (warm-up {:.1} over {} batches, steady {:.1})\n",
            format!("{unit}s/s"),
            self.images_per_second,
            self.warmup_images_per_second,
            self.warmup_batches,
            self.steady_images_per_second
        );
        if let Some(p) = &self.predicted {
            s += &format!(
                "predicted    {:.1} samples/s by the optimizer (measured/predicted {:.2})\n",
                p.images_per_second,
                self.steady_images_per_second / p.images_per_second
            );
        }
        if self.train_step_ms > 0.0 {
            s += &format!(
                "data stall   {:.1}% of wall time waiting for data, with a {:.1} ms training step\n",
                self.stall_fraction * 100.0,
                self.train_step_ms
            );
        } else {
            s += &format!(
                "data stall   {:.1}% (no training step simulated: --train-step-ms)\n",
                self.stall_fraction * 100.0
            );
        }
        s += &format!(
            "{:13}{:.5}   ({:.2} ms of CPU per {unit})\n",
            format!("CPU s/{unit}"),
            self.cpu_seconds_per_image,
            self.cpu_seconds_per_image * 1e3
        );
        s += &format!(
            "batch wait   p50 {:.2} ms   p99 {:.2} ms\n",
            self.batch_latency_p50_ms, self.batch_latency_p99_ms
        );
        s += &format!(
            "peak RSS     {:.1} MiB   (batch buffers allocated: {})\n",
            self.peak_rss_mib, self.buffer_allocations
        );
        if let Some(a) = self.audio_seconds_per_second {
            s += &format!("audio        {a:.0} s of audio per second\n");
        }
        if let Some(t) = self.tokens_per_second {
            s += &format!("tokens       {t:.0} tokens per second\n");
        }
        if let Some(p) = self.padding_fraction {
            s += &format!("padding      {:.1}% of the batch tensors\n", p * 100.0);
        }
        if self.prefetch_adjustments > 0 {
            s += &format!(
                "prefetch     ended at {} batches after {} adaptive changes\n",
                self.prefetch_depth, self.prefetch_adjustments
            );
        }
        if self.window_decodes > 0 {
            s += &format!(
                "decode       {} of {} images decoded by window (crop-aware)\n",
                self.window_decodes,
                self.images + self.skipped
            );
        }
        if self.scaled_decodes > 0 {
            s += &format!(
                "decode       {} of {} images decoded at 1/2–1/8 scale (approximate: \
                 --allow-approx)\n",
                self.scaled_decodes,
                self.images + self.skipped
            );
        }
        if self.cache_hits > 0 || self.cache_mib > 0.0 {
            s += &format!(
                "cache        {} hits, {:.1} MiB held\n",
                self.cache_hits, self.cache_mib
            );
        }
        s += &format!("placement    {}\n", self.placement);
        if let Some(v) = &self.verify {
            s += &v.to_text();
        }
        if let Some(d) = &self.device_feed {
            s += &d.to_text();
        }
        s += &format!("checksum     {}\n\n", self.checksum);
        s += &format!(
            "{:<40} {:>10} {:>12} {:>7}\n",
            "stage", "calls", "µs/call", "share"
        );
        for r in &self.stages {
            s += &format!(
                "{:<40} {:>10} {:>12.1} {:>6.1}%\n",
                r.name,
                r.calls,
                r.us_per_call,
                r.share * 100.0
            );
        }
        s += "\nplan\n";
        for line in self.plan.lines() {
            s += &format!("  {line}\n");
        }
        s
    }
}
