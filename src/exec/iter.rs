//! The epoch iterator: keeps up to `prefetch` batches in flight on the worker pool (moved within
//! bounds by the adaptive controller when enabled), hands them out in order, and on drop stops
//! the workers and waits for them.

use super::{PrefetchController, Shared};
use crate::batch::{Batch, DenseBatch, Images};
use crate::error::{Error, Result, SampleError};
use crate::state::PackedPosition;
use crate::tensor::{DType, Layout};
use crate::text::{PackSpec, TokenStream};
use crossbeam_channel::{Receiver, Sender};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) type Delivery = (u64, Result<Batch>);

/// What [`EpochIter::next_within`] found.
// Moved straight out once per batch: boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Wait {
    /// The next batch in order (or the error that ends the epoch).
    Ready(Result<Batch>),
    /// The epoch has no more batches.
    Finished,
    /// Nothing arrived within the timeout; ask again (the work goes on meanwhile).
    TimedOut,
}

pub struct EpochIter {
    shared: Arc<Shared>,
    epoch: u32,
    order: Arc<Vec<u64>>,
    /// Chunks of `batch_size` samples the workers build: the batches themselves, or what a
    /// packed pipeline's `packing` draws documents from.
    num_chunks: u64,
    next_spawn: u64,
    next_yield: u64,
    /// Spawned and not yet handed out (running, or finished and waiting in `ready`).
    in_flight: usize,
    ready: BTreeMap<u64, Result<Batch>>,
    tx: Sender<Delivery>,
    rx: Receiver<Delivery>,
    cancel: Arc<AtomicBool>,
    finished: bool,
    controller: PrefetchController,
    packing: Option<Packing>,
    /// Remote sources: fetches the next samples' bytes ahead of the workers, walking
    /// `ahead_order` (the samples of this iterator's batches, in the order it builds them).
    read_ahead: Option<crate::source::shards::ReadAhead>,
    ahead_order: Arc<Vec<u64>>,
    /// The first batch handed out, and the distance between batches (1: every batch; W: one
    /// of W iterators splitting the epoch by batch).
    first: u64,
    step: u64,
}

/// A packed pipeline's state between batches.
struct Packing {
    spec: PackSpec,
    stream: TokenStream,
    /// Samples the skip policy left out since the last packed batch.
    skipped: Vec<SampleError>,
    /// Packed batches made so far (handed out or skipped over when resuming).
    made: u64,
    /// Resuming by replay: batches to make and drop before the first one handed out.
    skip: u64,
    /// Chunks with tokens in the stream, in order: (chunk, tokens pushed, tokens left).
    pushed: std::collections::VecDeque<(u64, usize, usize)>,
    /// Resuming from a saved stream position: rebuild the stream first.
    rebuild: Option<PackedPosition>,
}

impl EpochIter {
    /// The iterator over batches `start`, `start + step`, ... of `epoch` (start 0, step 1:
    /// the whole epoch; see [`crate::Pipeline::epoch_from`] and
    /// [`crate::Pipeline::epoch_strided`]; a packed pipeline only steps by 1).
    pub(crate) fn new(shared: Arc<Shared>, epoch: u32, start: u64, step: u64) -> Self {
        debug_assert!(step == 1 || shared.pack.is_none());
        let order = Arc::new(shared.epoch_order(epoch));
        let s = &shared.settings;
        let (tx, rx) = crossbeam_channel::unbounded();
        let (floor, ceiling) = if s.max_prefetch > s.prefetch {
            (s.prefetch.min(2), s.max_prefetch)
        } else {
            (s.prefetch, s.prefetch)
        };
        let controller = PrefetchController::new(s.prefetch, floor, ceiling);
        let packing = shared.pack.map(|spec| Packing {
            spec,
            stream: TokenStream::default(),
            skipped: Vec::new(),
            made: 0,
            skip: start,
            pushed: Default::default(),
            rebuild: None,
        });
        // A packed epoch is resumed by replaying it (see `Pipeline::epoch_from`).
        let start = if packing.is_some() { 0 } else { start };
        let num_chunks = shared.chunks_per_epoch();
        let read_ahead = shared.source.read_ahead();
        let ahead_order = match (&read_ahead, step) {
            (Some(_), 2..) => {
                let size = shared.settings.batch_size;
                let own = (start..num_chunks).step_by(step as usize).flat_map(|b| {
                    let from = b as usize * size;
                    order[from.min(order.len())..(from + size).min(order.len())].iter()
                });
                Arc::new(own.copied().collect())
            }
            _ => order.clone(),
        };
        EpochIter {
            num_chunks,
            read_ahead,
            ahead_order,
            first: start,
            step: step.max(1),
            shared,
            epoch,
            order,
            next_spawn: start,
            next_yield: start,
            in_flight: 0,
            ready: BTreeMap::new(),
            tx,
            rx,
            cancel: Arc::new(AtomicBool::new(false)),
            finished: false,
            controller,
            packing,
        }
    }

    /// Batches in this epoch (None when packed: known only once the epoch is tokenized).
    pub fn num_batches(&self) -> Option<u64> {
        self.shared.batches_per_epoch()
    }

    /// The epoch this iterator runs.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// Position of the next batch to be handed out (batches already delivered, counting any a
    /// resumed iterator started after): with the epoch, all a resume needs.
    pub fn next_index(&self) -> u64 {
        match &self.packing {
            Some(p) => p.made,
            None => self.next_yield,
        }
    }

    /// Where this iterator stands, as a value a run resumes from
    /// ([`crate::Pipeline::resume`]).
    pub fn state(&self) -> crate::state::PipelineState {
        let mut state = self.shared.state(self.epoch, self.next_index());
        state.packed = self.packed_position();
        state
    }

    /// A packed pipeline's token stream position (see [`PackedPosition`]); None otherwise.
    pub fn packed_position(&self) -> Option<PackedPosition> {
        let p = self.packing.as_ref()?;
        if p.rebuild.is_some() {
            return p.rebuild;
        }
        let next_chunk = self.next_yield;
        Some(match p.pushed.front() {
            Some(&(chunk, pushed, left)) => PackedPosition {
                chunk,
                skip_tokens: (pushed - left) as u64,
                next_chunk,
            },
            None => PackedPosition {
                chunk: next_chunk,
                skip_tokens: 0,
                next_chunk,
            },
        })
    }

    /// A packed epoch resumed at batch `position` from its saved stream position `at`: only
    /// the chunks `at.chunk..at.next_chunk` are tokenized again (their tail is the stream).
    pub(crate) fn packed_from(
        shared: Arc<Shared>,
        epoch: u32,
        position: u64,
        at: PackedPosition,
    ) -> Result<Self> {
        let chunks = shared.chunks_per_epoch();
        if !(at.chunk <= at.next_chunk && at.next_chunk <= chunks) {
            return Err(Error::InvalidPipeline(format!(
                "cannot resume: packed position chunks {}..{} of an epoch of {chunks}",
                at.chunk, at.next_chunk
            )));
        }
        let mut iter = EpochIter::new(shared, epoch, 0, 1);
        (iter.next_spawn, iter.next_yield) = (at.chunk, at.chunk);
        let p = iter.packing.as_mut().expect("a packed pipeline");
        p.made = position;
        p.rebuild = Some(at);
        Ok(iter)
    }

    /// The next batch, waiting at most `timeout` for it: lets a caller that must react to
    /// something else (a signal, a shutdown) wait in slices without losing its place.
    pub fn next_within(&mut self, timeout: Duration) -> Wait {
        self.advance(Some(Instant::now() + timeout))
    }

    fn top_up(&mut self) {
        if let Some(read_ahead) = &mut self.read_ahead {
            // Position of the next batch's first sample in `ahead_order`.
            let batches_before = match self.step {
                1 => self.next_spawn,
                step => (self.next_spawn - self.first) / step,
            };
            let from = batches_before as usize * self.shared.settings.batch_size;
            read_ahead.advance(&self.ahead_order, from);
        }
        while self.in_flight < self.controller.depth && self.next_spawn < self.num_chunks {
            let b = self.next_spawn;
            let (shared, order, tx, cancel) = (
                self.shared.clone(),
                self.order.clone(),
                self.tx.clone(),
                self.cancel.clone(),
            );
            let epoch = self.epoch;
            self.shared.pool.spawn(move || {
                let reply = tx.clone();
                let run = std::panic::AssertUnwindSafe(|| {
                    shared.run_batch(epoch, b, &order, &cancel, tx)
                });
                if std::panic::catch_unwind(run).is_err() {
                    // The receiver outlives every task (Drop waits), so this cannot fail.
                    let _ = reply.send((
                        b,
                        Err(Error::Worker(format!(
                            "batch {b} panicked while assembling"
                        ))),
                    ));
                }
            });
            self.next_spawn += self.step;
            self.in_flight += 1;
        }
    }

    /// Wait for every spawned task to report, so no work outlives the iterator.
    fn drain(&mut self) {
        let outstanding = self.in_flight - self.ready.len();
        for _ in 0..outstanding {
            let _ = self.rx.recv();
        }
        self.ready.clear();
        self.in_flight = 0;
    }
}

impl EpochIter {
    /// Hand out the next batch in order, waiting for it until `deadline` (None: as long as it
    /// takes).
    fn advance(&mut self, deadline: Option<Instant>) -> Wait {
        if self.packing.is_none() {
            return self.next_chunk(deadline);
        }
        loop {
            if let Some(at) = self.packing.as_ref().unwrap().rebuild {
                if self.next_yield < at.next_chunk {
                    match self.next_chunk(deadline) {
                        Wait::Ready(Ok(chunk)) => {
                            // Its skipped samples were reported before the state was saved.
                            self.push_chunk(chunk);
                            self.packing.as_mut().unwrap().skipped.clear();
                            continue;
                        }
                        Wait::Finished => {}
                        other => return other,
                    }
                }
                let p = self.packing.as_mut().unwrap();
                let skip = at.skip_tokens as usize;
                if self.next_yield < at.next_chunk || skip > p.stream.len() {
                    self.finished = true;
                    return Wait::Ready(Err(Error::InvalidPipeline(format!(
                        "cannot resume: the saved packed position ({} tokens into chunk {}) \
                         does not match these documents' tokens",
                        at.skip_tokens, at.chunk
                    ))));
                }
                p.stream.drop_front(skip);
                consume(&mut p.pushed, skip);
                p.rebuild = None;
                continue;
            }
            let batch_tokens = {
                let p = self.packing.as_ref().unwrap();
                p.spec.seq_len * self.shared.settings.batch_size
            };
            let full = self.packing.as_ref().unwrap().stream.len() >= batch_tokens;
            if !full {
                match self.next_chunk(deadline) {
                    Wait::Ready(Ok(chunk)) => {
                        self.push_chunk(chunk);
                        continue;
                    }
                    Wait::Finished => {
                        // What is left makes the last batch, unless the epoch ended in an
                        // error (then nothing more comes) or drop_last drops it.
                        let p = self.packing.as_ref().unwrap();
                        if self.finished || p.stream.is_empty() || self.shared.settings.drop_last {
                            return Wait::Finished;
                        }
                    }
                    other => return other,
                }
            }
            let batch = self.packed_batch();
            let p = self.packing.as_mut().unwrap();
            if p.skip > 0 {
                p.skip -= 1;
                continue;
            }
            return Wait::Ready(Ok(batch));
        }
    }

    /// Append a chunk's documents (padded ids with lengths) to the token stream.
    fn push_chunk(&mut self, chunk: Batch) {
        let index = self.next_yield - 1; // next_chunk just handed it out
        let p = self.packing.as_mut().unwrap();
        let before = p.stream.len();
        let d = chunk.dense().expect("token chunks are padded batches");
        let width = d.shape.get(1).copied().unwrap_or(0);
        for (k, (&doc, &length)) in chunk.sample_indices.iter().zip(&chunk.lengths).enumerate() {
            let row = &d.bytes()[k * width * 4..][..length * 4];
            let ids = row
                .chunks_exact(4)
                .map(|b| i32::from_le_bytes(b.try_into().unwrap()));
            p.stream.push(doc, ids, &p.spec);
        }
        let tokens = p.stream.len() - before;
        if tokens > 0 {
            p.pushed.push_back((index, tokens, tokens));
        }
        p.skipped.extend(chunk.skipped);
    }

    /// The next packed batch: up to `batch_size` blocks from the front of the stream.
    fn packed_batch(&mut self) -> Batch {
        let shared = &self.shared;
        let p = self.packing.as_mut().unwrap();
        let pad = shared.settings.pad_id as i32;
        let blocks = p.stream.take(shared.settings.batch_size, &p.spec, pad);
        consume(&mut p.pushed, blocks.lengths.iter().sum());
        let shape = vec![blocks.lengths.len(), p.spec.seq_len];
        let tensor = |values: &[i32]| {
            let mut data = shared.buffers.take(values.len() * 4);
            for (w, v) in data.as_mut_slice().chunks_exact_mut(4).zip(values) {
                w.copy_from_slice(&v.to_le_bytes());
            }
            DenseBatch {
                dtype: DType::I32,
                layout: Layout::Chw,
                shape: shape.clone(),
                data,
            }
        };
        let batch = Batch {
            epoch: self.epoch,
            index: p.made,
            images: Images::Dense(tensor(&blocks.ids)),
            token_labels: Some(tensor(&blocks.labels)),
            token_offsets: None,
            labels: shared.labels(&blocks.documents),
            texts: shared.texts(&blocks.documents),
            sample_indices: blocks.documents,
            skipped: std::mem::take(&mut p.skipped),
            lengths: blocks.lengths,
            cu_seqlens: blocks.cu_seqlens,
        };
        p.made += 1;
        batch
    }

    /// Hand out the next chunk in order (the next batch, when not packing).
    fn next_chunk(&mut self, deadline: Option<Instant>) -> Wait {
        if self.finished || self.next_yield >= self.num_chunks {
            return Wait::Finished;
        }
        self.top_up();
        let mut waited = false;
        loop {
            if let Some(mut result) = self.ready.remove(&self.next_yield) {
                if let Ok(Batch {
                    images: Images::Device(d),
                    ..
                }) = &mut result
                {
                    d.mark_delivered();
                }
                self.next_yield += self.step;
                self.in_flight -= 1;
                self.controller.observe(waited, self.ready.len());
                if self.next_yield >= self.num_chunks {
                    let c = &self.controller;
                    self.shared.timers.prefetch(c.depth, c.adjustments);
                }
                if result.is_err() {
                    self.finished = true;
                    self.cancel.store(true, Ordering::Relaxed);
                    self.drain();
                } else {
                    self.top_up();
                }
                return Wait::Ready(result);
            }
            waited = true;
            // While the loop waits, a full device ring means it holds too many batches.
            let ring = self.shared.gpu.as_ref().and_then(|g| g.engine.as_ref());
            let _waiting = ring.map(|e| e.ring().consumer_waits());
            let (b, result) = match deadline {
                None => self.rx.recv().expect("a task reports every batch"),
                Some(at) => match self.rx.recv_deadline(at) {
                    Ok(delivery) => delivery,
                    Err(_) => return Wait::TimedOut,
                },
            };
            self.ready.insert(b, result);
        }
    }
}

/// `n` tokens of the stream's front delivered: count them off the chunks they came from.
fn consume(pushed: &mut std::collections::VecDeque<(u64, usize, usize)>, mut n: usize) {
    while n > 0 {
        let Some(front) = pushed.front_mut() else {
            return;
        };
        let taken = front.2.min(n);
        front.2 -= taken;
        n -= taken;
        if front.2 == 0 {
            pushed.pop_front();
        }
    }
}

impl Iterator for EpochIter {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        match self.advance(None) {
            Wait::Ready(result) => Some(result),
            Wait::Finished => None,
            Wait::TimedOut => unreachable!("no deadline was set"),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self.packing {
            Some(_) => (0, None),
            None => {
                let left = self.num_chunks.saturating_sub(self.next_yield);
                (0, Some(left.div_ceil(self.step) as usize))
            }
        }
    }
}

impl Drop for EpochIter {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
        self.drain();
    }
}
