//! The benchmark harness behind `sluice bench`: built-in workloads, a runner that measures
//! throughput, latency, CPU time and memory, and the report it prints.

mod chart;
mod checksum;
mod device_feed;
mod dump;
mod report;
mod runner;
mod sys;
mod verify;
mod workloads;

pub use chart::{layout as chart_layout, Chart, Shape};
pub use checksum::Checksum;
pub use device_feed::DeviceFeedReport;
pub use dump::{dump_batch, npy_bytes};
pub use report::{BenchReport, StageRow, TimelinePoint};
pub use runner::{run, BenchOptions};
pub use sys::{cpu_seconds, peak_rss_bytes};
pub use verify::Verification;
pub use workloads::{
    BatchDefaults, TextAssets, Workload, ASR_SPECTROGRAM, BERT_BUCKET_WINDOWS, BERT_MAX_TOKENS,
    BERT_PAD_MULTIPLE, CEDAR_STFT, GPT_PACK_SEQ_LEN, NLP_EMBEDDING_DIM, NLP_MAX_TOKENS, WORKLOADS,
};

/// The median of `values` (0 when empty; the mean of the middle two when even). Sorts them.
pub(crate) fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}
