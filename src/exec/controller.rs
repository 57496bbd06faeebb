//! The adaptive prefetch controller (cedar-style): it watches what the consumer sees and moves
//! the number of batches in flight between a floor and a ceiling. Consumer waiting for batches →
//! more in flight (the workers get ahead); finished batches piling up unread → fewer (less
//! memory held). It changes only how far ahead work is scheduled, never what is computed:
//! randomness is keyed by sample, so results are the same whatever it decides.

/// Decisions are made once per this many delivered batches.
const WINDOW: usize = 8;

#[derive(Debug, Clone)]
pub struct PrefetchController {
    pub depth: usize,
    min: usize,
    max: usize,
    observed: usize,
    waited: usize,
    backlog: usize,
    pub adjustments: u64,
}

impl PrefetchController {
    /// Start at `depth`, stay within `[min, max]` (`min == max`: fixed).
    pub fn new(depth: usize, min: usize, max: usize) -> Self {
        PrefetchController {
            depth: depth.clamp(min, max),
            min,
            max,
            observed: 0,
            waited: 0,
            backlog: 0,
            adjustments: 0,
        }
    }

    /// One delivered batch: whether the consumer had to wait for it, and how many finished
    /// batches were queued behind it.
    pub fn observe(&mut self, waited: bool, queued: usize) {
        if self.min == self.max {
            return;
        }
        self.observed += 1;
        self.waited += usize::from(waited);
        self.backlog += queued;
        if self.observed < WINDOW {
            return;
        }
        let before = self.depth;
        if self.waited * 4 >= WINDOW && self.depth < self.max {
            // Waiting on a quarter or more of the batches: get further ahead.
            self.depth += 1;
        } else if self.waited == 0 && self.backlog >= (self.depth.saturating_sub(1)) * WINDOW {
            // Never waited and batches sat ready: hold less.
            self.depth = (self.depth - 1).max(self.min);
        }
        self.adjustments += u64::from(self.depth != before);
        self.observed = 0;
        self.waited = 0;
        self.backlog = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_when_the_consumer_waits_and_shrinks_when_batches_pile_up() {
        let mut c = PrefetchController::new(2, 2, 5);
        for _ in 0..WINDOW * 10 {
            c.observe(true, 0);
        }
        assert_eq!(c.depth, 5, "bounded by the ceiling");
        for _ in 0..WINDOW * 10 {
            c.observe(false, 4);
        }
        assert_eq!(c.depth, 2, "bounded by the floor");
        assert_eq!(c.adjustments, 6);
        // Occasional waits below the threshold change nothing.
        let mut c = PrefetchController::new(3, 2, 5);
        for i in 0..WINDOW * 4 {
            c.observe(i % WINDOW == 0, 1);
        }
        assert_eq!(c.depth, 3);
    }

    #[test]
    fn a_fixed_depth_never_moves() {
        let mut c = PrefetchController::new(3, 3, 3);
        for _ in 0..WINDOW * 4 {
            c.observe(true, 0);
        }
        assert_eq!((c.depth, c.adjustments), (3, 0));
    }
}
