//! Counters the executor keeps while it runs: time per stage, samples done, samples skipped.

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) struct StageTimers {
    names: Vec<String>,
    nanos: Vec<AtomicU64>,
    calls: Vec<AtomicU64>,
    samples: AtomicU64,
    skipped: AtomicU64,
    /// Decoded audio, in microseconds of signal (speech pipelines).
    audio_micros: AtomicU64,
    /// Tokens the tokenizer produced (text pipelines).
    tokens: AtomicU64,
    /// Images decoded by window (crop-aware decode) rather than whole.
    window_decodes: AtomicU64,
    /// Images decoded at a reduced scale (DCT-domain scaling, approximate decode).
    scaled_decodes: AtomicU64,
    /// The adaptive controller's latest prefetch depth, and how often it changed.
    prefetch_depth: AtomicU64,
    prefetch_adjustments: AtomicU64,
}

impl StageTimers {
    pub fn new(names: Vec<String>) -> Self {
        let zeros = || names.iter().map(|_| AtomicU64::new(0)).collect();
        StageTimers {
            nanos: zeros(),
            calls: zeros(),
            names,
            samples: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            audio_micros: AtomicU64::new(0),
            tokens: AtomicU64::new(0),
            window_decodes: AtomicU64::new(0),
            scaled_decodes: AtomicU64::new(0),
            prefetch_depth: AtomicU64::new(0),
            prefetch_adjustments: AtomicU64::new(0),
        }
    }

    pub fn record(&self, stage: usize, start: std::time::Instant) -> std::time::Instant {
        let now = std::time::Instant::now();
        self.nanos[stage].fetch_add((now - start).as_nanos() as u64, Ordering::Relaxed);
        self.calls[stage].fetch_add(1, Ordering::Relaxed);
        now
    }

    /// `calls` calls of `stage` done together since `start` (a batch-level step).
    pub fn record_calls(&self, stage: usize, start: std::time::Instant, calls: u64) {
        let nanos = start.elapsed().as_nanos() as u64;
        self.nanos[stage].fetch_add(nanos, Ordering::Relaxed);
        self.calls[stage].fetch_add(calls, Ordering::Relaxed);
    }

    /// The name of timer slot `stage` (read, DecodeImage, then each step).
    pub fn name(&self, stage: usize) -> &str {
        self.names.get(stage).map_or("executor", String::as_str)
    }

    pub fn sample_done(&self) {
        self.samples.fetch_add(1, Ordering::Relaxed);
    }

    /// An epoch's prefetch controller ended at `depth` after `adjustments` changes.
    pub fn prefetch(&self, depth: usize, adjustments: u64) {
        self.prefetch_depth.store(depth as u64, Ordering::Relaxed);
        self.prefetch_adjustments
            .fetch_add(adjustments, Ordering::Relaxed);
    }

    /// A sample decoded to `seconds` of audio.
    pub fn audio_decoded(&self, seconds: f64) {
        self.audio_micros
            .fetch_add((seconds * 1e6).round() as u64, Ordering::Relaxed);
    }

    /// A sample tokenized to `n` tokens.
    pub fn tokens_decoded(&self, n: usize) {
        self.tokens.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// An image decoded: count it when only a window of it was, or at a reduced scale.
    pub fn decoded(&self, decoded: &crate::ops::Decoded) {
        if decoded.partial {
            self.window_decodes.fetch_add(1, Ordering::Relaxed);
        }
        if decoded.shrink > 1 {
            self.scaled_decodes.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn sample_skipped(&self) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self, buffer_allocations: u64, cache_hits: u64, cache_bytes: u64) -> RunStats {
        RunStats {
            stages: self
                .names
                .iter()
                .enumerate()
                .map(|(i, name)| StageStat {
                    name: name.clone(),
                    total_ns: self.nanos[i].load(Ordering::Relaxed),
                    calls: self.calls[i].load(Ordering::Relaxed),
                })
                .collect(),
            samples: self.samples.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            audio_seconds: self.audio_micros.load(Ordering::Relaxed) as f64 / 1e6,
            tokens: self.tokens.load(Ordering::Relaxed),
            window_decodes: self.window_decodes.load(Ordering::Relaxed),
            scaled_decodes: self.scaled_decodes.load(Ordering::Relaxed),
            buffer_allocations,
            cache_hits,
            cache_bytes,
            prefetch_depth: self.prefetch_depth.load(Ordering::Relaxed),
            prefetch_adjustments: self.prefetch_adjustments.load(Ordering::Relaxed),
        }
    }
}

/// Time spent in one stage, summed over all worker threads.
#[derive(Debug, Clone, Serialize)]
pub struct StageStat {
    pub name: String,
    pub total_ns: u64,
    pub calls: u64,
}

impl StageStat {
    pub fn ns_per_call(&self) -> f64 {
        self.total_ns as f64 / self.calls.max(1) as f64
    }
}

/// A snapshot of a pipeline's counters.
#[derive(Debug, Clone, Serialize)]
pub struct RunStats {
    pub stages: Vec<StageStat>,
    /// Samples delivered (processed without error).
    pub samples: u64,
    /// Samples left out under the `skip` policy.
    pub skipped: u64,
    /// Seconds of audio decoded (speech pipelines; 0 for images).
    pub audio_seconds: f64,
    /// Tokens produced by the tokenizer (text pipelines; 0 otherwise).
    pub tokens: u64,
    /// Images decoded by window: only the part the pipeline's leading crop reads (the others,
    /// of the images decoded, were decoded whole: PNG, lossless JPEG, crops covering the image).
    pub window_decodes: u64,
    /// Images decoded at 1/2, 1/4 or 1/8 scale by the IDCT (only with approximations allowed:
    /// [`crate::pipeline::Settings::approx_decode`]).
    pub scaled_decodes: u64,
    /// Batch buffers allocated rather than reused.
    pub buffer_allocations: u64,
    /// Samples served from the prefix cache (read and decode skipped).
    pub cache_hits: u64,
    /// Bytes held by the prefix cache.
    pub cache_bytes: u64,
    /// Prefetch depth at the end of the last finished epoch (0: none finished yet), and the
    /// adaptive controller's changes to it.
    pub prefetch_depth: u64,
    pub prefetch_adjustments: u64,
}

impl RunStats {
    /// Counters accumulated between `earlier` and `self`.
    pub fn since(&self, earlier: &RunStats) -> RunStats {
        RunStats {
            stages: self
                .stages
                .iter()
                .zip(&earlier.stages)
                .map(|(a, b)| StageStat {
                    name: a.name.clone(),
                    total_ns: a.total_ns - b.total_ns,
                    calls: a.calls - b.calls,
                })
                .collect(),
            samples: self.samples - earlier.samples,
            skipped: self.skipped - earlier.skipped,
            audio_seconds: self.audio_seconds - earlier.audio_seconds,
            tokens: self.tokens - earlier.tokens,
            window_decodes: self.window_decodes - earlier.window_decodes,
            scaled_decodes: self.scaled_decodes - earlier.scaled_decodes,
            buffer_allocations: self.buffer_allocations - earlier.buffer_allocations,
            cache_hits: self.cache_hits - earlier.cache_hits,
            cache_bytes: self.cache_bytes,
            prefetch_depth: self.prefetch_depth,
            prefetch_adjustments: self.prefetch_adjustments - earlier.prefetch_adjustments,
        }
    }
}
