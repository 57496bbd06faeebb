//! The bounded ring of staging slots behind device batches. A slot (pinned host memory plus the
//! device buffers one batch uses) is leased to one batch at a time and comes back only when the
//! training loop drops that batch, so memory is fixed by the slot count, never by the number of
//! batches.
//!
//! Sizing: at most `prefetch` batches are in flight inside the pipeline, so a ring of
//! `prefetch + 2` slots lets the training loop hold two batches (the one training and the next)
//! without ever blocking the pipeline. A loop that holds more and then waits for another batch
//! could wait forever (the batch it waits for needs a slot only it can free); the ring detects
//! that and fails the batch with an error that says so, instead of hanging.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long every slot may stay leased while the training loop waits for a batch before the
/// ring calls it a deadlock (a loop that hands batches to another thread gets this much slack).
const DEADLOCK_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug)]
struct State {
    free: Vec<usize>,
    /// Batches handed to the training loop and not yet dropped.
    held_by_consumer: usize,
    /// Times a producer found every slot leased and went to sleep (lets tests see a wait
    /// without timing it).
    waits: u64,
}

#[derive(Debug)]
pub struct SlotRing {
    slots: usize,
    state: Mutex<State>,
    returned: Condvar,
    /// Set while the training loop is blocked waiting for its next batch.
    consumer_waiting: AtomicBool,
    grace: Duration,
}

/// One leased slot; returns to the ring on drop.
#[derive(Debug)]
pub struct SlotLease {
    index: usize,
    ring: Arc<SlotRing>,
    delivered: bool,
}

impl SlotRing {
    pub fn new(slots: usize) -> Arc<Self> {
        Self::with_grace(slots, DEADLOCK_GRACE)
    }

    fn with_grace(slots: usize, grace: Duration) -> Arc<Self> {
        assert!(slots > 0, "a ring needs a slot");
        Arc::new(SlotRing {
            slots,
            // Popped from the back: slot 0 first.
            state: Mutex::new(State {
                free: (0..slots).rev().collect(),
                held_by_consumer: 0,
                waits: 0,
            }),
            returned: Condvar::new(),
            consumer_waiting: AtomicBool::new(false),
            grace,
        })
    }

    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Slots not leased right now.
    pub fn free(&self) -> usize {
        self.state.lock().unwrap().free.len()
    }

    /// Lease a slot, waiting for the training loop to drop a batch when none is free. Errors
    /// when `cancel` is set, or when every slot stays leased while the loop waits for a batch.
    pub fn acquire(self: &Arc<Self>, cancel: &AtomicBool) -> Result<SlotLease, String> {
        let mut state = self.state.lock().unwrap();
        let mut stuck_since: Option<Instant> = None;
        loop {
            if let Some(index) = state.free.pop() {
                return Ok(SlotLease {
                    index,
                    ring: self.clone(),
                    delivered: false,
                });
            }
            if cancel.load(Ordering::Relaxed) {
                return Err("epoch cancelled".into());
            }
            if self.consumer_waiting.load(Ordering::Relaxed) {
                let since = *stuck_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= self.grace {
                    return Err(format!(
                        "every device batch slot is in use ({} slots: prefetch + 2) while the \
                         training loop holds {} batches and waits for another; hold at most \
                         two device batches at a time (drop a batch before asking for the next)",
                        self.slots, state.held_by_consumer
                    ));
                }
            } else {
                stuck_since = None;
            }
            state.waits += 1;
            state = self
                .returned
                .wait_timeout(state, Duration::from_millis(20))
                .unwrap()
                .0;
        }
    }

    /// Mark the training loop as blocked waiting for a batch until the guard drops.
    pub fn consumer_waits(self: &Arc<Self>) -> ConsumerWait {
        self.consumer_waiting.store(true, Ordering::Relaxed);
        ConsumerWait(self.clone())
    }

    fn give_back(&self, index: usize, delivered: bool) {
        let mut state = self.state.lock().unwrap();
        debug_assert!(!state.free.contains(&index), "slot {index} returned twice");
        state.free.push(index);
        if delivered {
            state.held_by_consumer -= 1;
        }
        drop(state);
        self.returned.notify_all();
    }
}

/// Clears the ring's "training loop is waiting" flag on drop.
pub struct ConsumerWait(Arc<SlotRing>);

impl Drop for ConsumerWait {
    fn drop(&mut self) {
        self.0.consumer_waiting.store(false, Ordering::Relaxed);
    }
}

impl SlotLease {
    pub fn index(&self) -> usize {
        self.index
    }

    /// The batch using this slot has been handed to the training loop.
    pub fn mark_delivered(&mut self) {
        if !self.delivered {
            self.delivered = true;
            self.ring.state.lock().unwrap().held_by_consumer += 1;
        }
    }
}

impl Drop for SlotLease {
    fn drop(&mut self) {
        self.ring.give_back(self.index, self.delivered);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_reused_only_after_release_and_never_multiply() {
        let ring = SlotRing::new(3);
        let no = AtomicBool::new(false);
        let a = ring.acquire(&no).unwrap();
        let b = ring.acquire(&no).unwrap();
        let c = ring.acquire(&no).unwrap();
        let mut seen = [a.index(), b.index(), c.index()];
        seen.sort();
        assert_eq!(seen, [0, 1, 2]);
        assert_eq!(ring.free(), 0);
        let freed = b.index();
        drop(b);
        let again = ring.acquire(&no).unwrap();
        assert_eq!(again.index(), freed, "the released slot, not a new one");
        drop((a, c, again));
        assert_eq!(ring.free(), 3);
    }

    /// Block until a producer has gone to sleep on the full ring at least `n` times: the wait
    /// is observed, not timed.
    fn until_waited(ring: &SlotRing, n: u64) {
        while ring.state.lock().unwrap().waits < n {
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_full_ring_waits_for_a_release_from_another_thread() {
        let ring = SlotRing::new(1);
        let no = Arc::new(AtomicBool::new(false));
        let held = ring.acquire(&no).unwrap();
        let (r, n) = (ring.clone(), no.clone());
        let waiter = std::thread::spawn(move || r.acquire(&n).map(|l| l.index()));
        until_waited(&ring, 1);
        assert!(
            !waiter.is_finished(),
            "must wait while the only slot is leased"
        );
        drop(held);
        assert_eq!(waiter.join().unwrap(), Ok(0));
    }

    #[test]
    fn cancel_ends_a_wait() {
        let ring = SlotRing::new(1);
        let _held = ring.acquire(&AtomicBool::new(false)).unwrap();
        let cancel = Arc::new(AtomicBool::new(false));
        let (r, c) = (ring.clone(), cancel.clone());
        let waiter = std::thread::spawn(move || r.acquire(&c).map(|l| l.index()));
        until_waited(&ring, 1);
        cancel.store(true, Ordering::Relaxed);
        assert_eq!(waiter.join().unwrap(), Err("epoch cancelled".into()));
    }

    #[test]
    fn a_loop_that_hoards_batches_and_waits_gets_an_error_not_a_hang() {
        let ring = SlotRing::with_grace(2, Duration::from_millis(100));
        let no = AtomicBool::new(false);
        let mut a = ring.acquire(&no).unwrap();
        let mut b = ring.acquire(&no).unwrap();
        a.mark_delivered();
        b.mark_delivered();
        let _waiting = ring.consumer_waits();
        let err = ring.acquire(&no).unwrap_err();
        assert!(ring.state.lock().unwrap().waits >= 1, "it waited first");
        assert!(err.contains("holds 2 batches"), "{err}");
        assert!(err.contains("2 slots"), "{err}");
        drop(a);
        drop(_waiting);
        // Released: the count of held batches follows.
        assert_eq!(ring.state.lock().unwrap().held_by_consumer, 1);
        assert!(ring.acquire(&no).is_ok());
    }

    #[test]
    fn a_slow_loop_is_not_a_deadlock() {
        // Every slot leased but the loop is busy (not waiting): the pipeline just waits, well
        // past the grace period (each sleep is 20 ms, the grace 10 ms).
        let ring = SlotRing::with_grace(1, Duration::from_millis(10));
        let no = Arc::new(AtomicBool::new(false));
        let held = ring.acquire(&no).unwrap();
        let (r, n) = (ring.clone(), no.clone());
        let waiter = std::thread::spawn(move || r.acquire(&n).map(|l| l.index()));
        until_waited(&ring, 4);
        assert!(!waiter.is_finished());
        drop(held);
        assert_eq!(waiter.join().unwrap(), Ok(0));
    }
}
