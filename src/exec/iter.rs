//! The epoch iterator: keeps up to `prefetch` batches in flight on the worker pool (moved within
//! bounds by the adaptive controller when enabled), hands them out in order, and on drop stops
//! the workers and waits for them.

use super::{PrefetchController, Shared};
use crate::batch::{Batch, Images};
use crate::error::{Error, Result};
use crate::rng::{bucketed_order, epoch_order};
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
    num_batches: u64,
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
}

impl EpochIter {
    /// The iterator over `epoch` from batch `start` on (0: the whole epoch; see
    /// [`crate::Pipeline::epoch_from`]).
    pub(crate) fn new(shared: Arc<Shared>, epoch: u32, start: u64) -> Self {
        let s = &shared.settings;
        let mut order = epoch_order(shared.source.len(), s.seed, epoch, s.shuffle);
        if s.bucket_windows > 0 {
            // build() checked that the source knows every sample's length.
            let length = |i: u64| shared.source.length_hint(i).unwrap_or(0);
            let (batch, windows) = (s.batch_size, s.bucket_windows);
            order = bucketed_order(&order, length, batch, windows, s.seed, epoch, s.shuffle);
        }
        let (tx, rx) = crossbeam_channel::unbounded();
        let (floor, ceiling) = if s.max_prefetch > s.prefetch {
            (s.prefetch.min(2), s.max_prefetch)
        } else {
            (s.prefetch, s.prefetch)
        };
        let controller = PrefetchController::new(s.prefetch, floor, ceiling);
        EpochIter {
            num_batches: shared.batches_per_epoch(),
            shared,
            epoch,
            order: Arc::new(order),
            next_spawn: start,
            next_yield: start,
            in_flight: 0,
            ready: BTreeMap::new(),
            tx,
            rx,
            cancel: Arc::new(AtomicBool::new(false)),
            finished: false,
            controller,
        }
    }

    /// Batches in this epoch.
    pub fn num_batches(&self) -> u64 {
        self.num_batches
    }

    /// The epoch this iterator runs.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// Position of the next batch to be handed out (batches already delivered, counting any a
    /// resumed iterator started after): with the epoch, all a resume needs.
    pub fn next_index(&self) -> u64 {
        self.next_yield
    }

    /// The next batch, waiting at most `timeout` for it: lets a caller that must react to
    /// something else (a signal, a shutdown) wait in slices without losing its place.
    pub fn next_within(&mut self, timeout: Duration) -> Wait {
        self.advance(Some(Instant::now() + timeout))
    }

    fn top_up(&mut self) {
        while self.in_flight < self.controller.depth && self.next_spawn < self.num_batches {
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
            self.next_spawn += 1;
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
        if self.finished || self.next_yield >= self.num_batches {
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
                self.next_yield += 1;
                self.in_flight -= 1;
                self.controller.observe(waited, self.ready.len());
                if self.next_yield == self.num_batches {
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
        let left = (self.num_batches - self.next_yield) as usize;
        (0, Some(left))
    }
}

impl Drop for EpochIter {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
        self.drain();
    }
}
