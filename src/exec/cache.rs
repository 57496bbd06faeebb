//! In-memory cache of a pipeline's deterministic prefix (decode plus the leading operators that
//! draw no random numbers), so later epochs skip reading and decoding. Entries are filled on
//! first use, never evicted, and bounded by a byte budget: samples that do not fit are simply
//! recomputed. Results are byte-identical with or without the cache.

use crate::tensor::Image;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

pub(crate) struct PrefixCache {
    entries: Vec<OnceLock<Arc<Image>>>,
    budget: usize,
    used: AtomicUsize,
    hits: AtomicU64,
    /// How many leading executor steps the cached image already includes.
    pub prefix_steps: usize,
}

impl PrefixCache {
    pub fn new(samples: usize, budget: usize, prefix_steps: usize) -> Self {
        PrefixCache {
            entries: (0..samples).map(|_| OnceLock::new()).collect(),
            budget,
            used: AtomicUsize::new(0),
            hits: AtomicU64::new(0),
            prefix_steps,
        }
    }

    pub fn get(&self, index: u64) -> Option<&Arc<Image>> {
        let hit = self.entries[index as usize].get();
        if hit.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        hit
    }

    /// Keep a copy of `image` for `index` if the budget still has room for it.
    pub fn offer(&self, index: u64, image: &Image) {
        let size = image.data.len();
        let before = self.used.fetch_add(size, Ordering::Relaxed);
        if before + size > self.budget {
            self.used.fetch_sub(size, Ordering::Relaxed);
            return;
        }
        if self.entries[index as usize]
            .set(Arc::new(image.clone()))
            .is_err()
        {
            // Another worker cached this sample first (same bytes): give the room back.
            self.used.fetch_sub(size, Ordering::Relaxed);
        }
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    pub fn bytes(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}
