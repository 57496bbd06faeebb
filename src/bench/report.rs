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

/// Everything one `sluice bench` run measured. Field names are the JSON schema.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub workload: String,
    pub source: String,
    pub plan: String,
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
    /// Process CPU time (user + system) divided by images.
    pub cpu_seconds_per_image: f64,
    /// Time the consumer waited for each batch.
    pub batch_latency_p50_ms: f64,
    pub batch_latency_p99_ms: f64,
    pub peak_rss_mib: f64,
    /// Batch buffers allocated rather than reused (bounded by the prefetch depth).
    pub buffer_allocations: u64,
    /// xxh3-64 over every batch's bytes and labels in order: equal across thread counts.
    pub checksum: String,
    pub stages: Vec<StageRow>,
}

impl BenchReport {
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "workload     {}\nsource       {}\nthreads      {}   batch {}   epochs {}   seed {}\n",
            self.workload, self.source, self.threads, self.batch_size, self.epochs, self.seed
        );
        s += &format!(
            "images       {} in {:.2} s   ({} skipped)\n",
            self.images, self.wall_seconds, self.skipped
        );
        s += &format!("images/s     {:.1}\n", self.images_per_second);
        s += &format!(
            "CPU s/image  {:.5}   ({:.2} ms of CPU per image)\n",
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
