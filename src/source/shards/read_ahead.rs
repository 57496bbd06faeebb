//! Read-ahead for remote shards. The epoch iterator knows the order; as it spawns batches it
//! lets a [`ReadAhead`] walk ahead of them, which turns the next samples into range requests
//! (neighbours in a shard coalesced into one request, up to `max_request_bytes`) running on the
//! I/O runtime, at most `concurrency` at once and at most `window_bytes` fetched and not yet
//! consumed. A worker's read takes its sample's bytes from a fetched range (waiting if it is in
//! flight) and releases the range once every sample hinted into it was read. A sample nobody
//! hinted, a failed range or an evicted one is read directly: the cache only ever saves
//! requests, the bytes are the same either way.

use super::store::{runtime, IoConfig, Object};
use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// A fetched (or in-flight) range of one shard.
struct Fetch {
    shard: u32,
    range: Range<u64>,
    /// None while in flight; Err when the request failed (readers then read directly).
    data: Option<Result<Arc<Vec<u8>>, ()>>,
    /// Hinted samples not yet read from it.
    pending: u32,
    /// The read-ahead that made it (its entries go when it is dropped).
    owner: u64,
}

#[derive(Default)]
struct State {
    fetches: HashMap<u64, Fetch>,
    /// Fetch ids per shard, to find the one that covers a sample.
    by_shard: HashMap<u32, Vec<u64>>,
    /// Bytes of fetches in flight or held, and the most there ever were.
    bytes: u64,
    peak_bytes: u64,
    next_id: u64,
}

impl State {
    /// The live fetch whose range covers `range` of `shard`.
    fn covering(&self, shard: u32, range: &Range<u64>) -> Option<u64> {
        self.by_shard.get(&shard)?.iter().copied().find(|id| {
            let f = &self.fetches[id];
            f.range.start <= range.start && range.end <= f.range.end
        })
    }
}

/// The shared cache of one remote source.
pub(crate) struct RangeCache {
    config: Arc<IoConfig>,
    state: Mutex<State>,
    arrived: Condvar,
    permits: Arc<tokio::sync::Semaphore>,
    next_owner: AtomicU64,
    /// Requests made and bytes fetched (read-ahead and direct), for reports and tests.
    pub requests: AtomicU64,
    pub bytes_fetched: AtomicU64,
}

/// Where sample bytes are: shard number and byte range in it.
pub(crate) trait SampleRanges: Send + Sync {
    fn sample_range(&self, index: u64) -> (u32, Range<u64>);
    fn shard_object(&self, shard: u32) -> &Object;
}

impl RangeCache {
    pub fn new(config: Arc<IoConfig>) -> Self {
        RangeCache {
            permits: Arc::new(tokio::sync::Semaphore::new(config.concurrency.max(1))),
            config,
            state: Mutex::new(State::default()),
            arrived: Condvar::new(),
            next_owner: AtomicU64::new(1),
            requests: AtomicU64::new(0),
            bytes_fetched: AtomicU64::new(0),
        }
    }

    /// The bytes of `range` in shard `shard`: from a fetched range that covers it, else read
    /// directly.
    pub fn read(&self, object: &Object, shard: u32, range: Range<u64>) -> crate::Result<Vec<u8>> {
        let mut state = self.state.lock().unwrap();
        while let Some(id) = state.covering(shard, &range) {
            match &state.fetches[&id].data {
                None => state = self.arrived.wait(state).unwrap(),
                Some(Err(())) => {
                    self.release(&mut state, id);
                    break;
                }
                Some(Ok(data)) => {
                    let f = &state.fetches[&id];
                    let at = (range.start - f.range.start) as usize;
                    let bytes = data[at..at + (range.end - range.start) as usize].to_vec();
                    self.release(&mut state, id);
                    return Ok(bytes);
                }
            }
        }
        drop(state);
        self.count(range.end - range.start);
        object.read_range(range)
    }

    fn count(&self, bytes: u64) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.bytes_fetched.fetch_add(bytes, Ordering::Relaxed);
    }

    /// One hinted read of fetch `id` done: drop it when none is left.
    fn release(&self, state: &mut State, id: u64) {
        let f = state.fetches.get_mut(&id).expect("a live fetch");
        f.pending = f.pending.saturating_sub(1);
        if f.pending == 0 || matches!(f.data, Some(Err(()))) {
            self.remove(state, id);
        }
    }

    fn remove(&self, state: &mut State, id: u64) {
        if let Some(f) = state.fetches.remove(&id) {
            state.bytes -= f.range.end - f.range.start;
            if let Some(ids) = state.by_shard.get_mut(&f.shard) {
                ids.retain(|&i| i != id);
            }
        }
    }

    /// Bytes fetched or in flight and not yet consumed.
    pub fn held_bytes(&self) -> u64 {
        self.state.lock().unwrap().bytes
    }

    /// The most bytes ever fetched or in flight and not yet consumed at once.
    pub fn peak_held_bytes(&self) -> u64 {
        self.state.lock().unwrap().peak_bytes
    }

    /// Start fetching `samples` (each (shard, range)) as coalesced requests for `owner`.
    fn fetch(
        self: &Arc<Self>,
        owner: u64,
        mut samples: Vec<(u32, Range<u64>)>,
        objects: &dyn SampleRanges,
    ) {
        samples.sort_by_key(|(s, r)| (*s, r.start));
        let mut state = self.state.lock().unwrap();
        let mut i = 0;
        while i < samples.len() {
            let (shard, first) = samples[i].clone();
            let mut range = first;
            let mut count = 1;
            let mut j = i + 1;
            while j < samples.len() {
                let (s, r) = &samples[j];
                let close = r.start <= range.end + self.config.coalesce_gap_bytes;
                let small = r.end.max(range.end) - range.start <= self.config.max_request_bytes;
                if *s != shard || !close || !small {
                    break;
                }
                range.end = range.end.max(r.end);
                count += 1;
                j += 1;
            }
            i = j;
            let id = state.next_id;
            state.next_id += 1;
            state.bytes += range.end - range.start;
            state.peak_bytes = state.peak_bytes.max(state.bytes);
            state.by_shard.entry(shard).or_default().push(id);
            state.fetches.insert(
                id,
                Fetch {
                    shard,
                    range: range.clone(),
                    data: None,
                    pending: count,
                    owner,
                },
            );
            self.count(range.end - range.start);
            let (cache, object) = (self.clone(), objects.shard_object(shard).clone());
            runtime().spawn(async move {
                let permit = cache.permits.clone().acquire_owned().await;
                let result = object.read_range_async(range).await;
                drop(permit);
                let mut state = cache.state.lock().unwrap();
                match state.fetches.get_mut(&id) {
                    Some(f) => f.data = Some(result.map(Arc::new).map_err(|_| ())),
                    None => return, // its read-ahead was dropped meanwhile
                }
                drop(state);
                cache.arrived.notify_all();
            });
        }
    }

    /// Hint one sample already covered by a live fetch (true), so that fetch serves it.
    fn cover(&self, shard: u32, range: &Range<u64>) -> bool {
        let mut state = self.state.lock().unwrap();
        match state.covering(shard, range) {
            Some(id) => {
                state.fetches.get_mut(&id).unwrap().pending += 1;
                true
            }
            None => false,
        }
    }
}

/// One pass's read-ahead over a remote source (see the module docs).
pub struct ReadAhead {
    cache: Arc<RangeCache>,
    source: Arc<dyn SampleRanges>,
    owner: u64,
    /// Position in the order up to which samples have been hinted.
    cursor: usize,
}

impl ReadAhead {
    pub(crate) fn new(cache: Arc<RangeCache>, source: Arc<dyn SampleRanges>) -> Self {
        let owner = cache.next_owner.fetch_add(1, Ordering::Relaxed);
        ReadAhead {
            cache,
            source,
            owner,
            cursor: 0,
        }
    }

    /// Hint the samples of `order` from position `from` (the next to be read) on, as far as
    /// the window allows. Hints go out in steps of a quarter window, so requests coalesce.
    pub fn advance(&mut self, order: &[u64], from: usize) {
        self.cursor = self.cursor.max(from);
        let window = self.cache.config.window_bytes;
        let held = self.cache.held_bytes();
        if self.cursor >= order.len() || held + window / 4 > window {
            return;
        }
        let mut budget = window - held;
        let mut batch = Vec::new();
        while self.cursor < order.len() {
            let (shard, range) = self.source.sample_range(order[self.cursor]);
            let len = range.end - range.start;
            if len > budget && !batch.is_empty() {
                break;
            }
            budget = budget.saturating_sub(len);
            self.cursor += 1;
            if !self.cache.cover(shard, &range) {
                batch.push((shard, range));
            }
        }
        self.cache.fetch(self.owner, batch, self.source.as_ref());
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        let mut state = self.cache.state.lock().unwrap();
        let mine: Vec<u64> = state
            .fetches
            .iter()
            .filter(|(_, f)| f.owner == self.owner)
            .map(|(&id, _)| id)
            .collect();
        for id in mine {
            self.cache.remove(&mut state, id);
        }
        drop(state);
        // Readers waiting on a removed fetch read directly.
        self.cache.arrived.notify_all();
    }
}
