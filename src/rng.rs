//! Counter-based random numbers (Philox 4x32-10).
//!
//! Every random decision is a pure function of (seed, epoch, sample index, operator id, draw
//! number), so results never depend on thread count, scheduling, batch boundaries or where an
//! operator runs. A GPU kernel can reproduce any stream from the same key and counter.

const PHILOX_M0: u32 = 0xD251_1F53;
const PHILOX_M1: u32 = 0xCD9E_8D57;
const PHILOX_W0: u32 = 0x9E37_79B9;
const PHILOX_W1: u32 = 0xBB67_AE85;

/// One Philox 4x32 block with 10 rounds.
pub fn philox4x32(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = counter;
    let mut k = key;
    for round in 0..10 {
        if round > 0 {
            k[0] = k[0].wrapping_add(PHILOX_W0);
            k[1] = k[1].wrapping_add(PHILOX_W1);
        }
        let p0 = u64::from(PHILOX_M0) * u64::from(c[0]);
        let p1 = u64::from(PHILOX_M1) * u64::from(c[2]);
        c = [
            ((p1 >> 32) as u32) ^ c[1] ^ k[0],
            p1 as u32,
            ((p0 >> 32) as u32) ^ c[3] ^ k[1],
            p0 as u32,
        ];
    }
    c
}

crate::simd::with_avx2! {
    /// Blocks `counter[0] + 0..8` of a stream into `out` (block-major), [`philox4x32`]'s rounds
    /// on eight lanes at once.
    fn philox_eight(counter: [u32; 4], key: [u32; 2], out: &mut [u32; 32]) {
        let mut c: [[u32; 8]; 4] = [
            std::array::from_fn(|lane| counter[0].wrapping_add(lane as u32)),
            [counter[1]; 8],
            [counter[2]; 8],
            [counter[3]; 8],
        ];
        let mut k = key;
        for round in 0..10 {
            if round > 0 {
                k[0] = k[0].wrapping_add(PHILOX_W0);
                k[1] = k[1].wrapping_add(PHILOX_W1);
            }
            let mut next: [[u32; 8]; 4] = [[0; 8]; 4];
            for lane in 0..8 {
                let p0 = u64::from(PHILOX_M0) * u64::from(c[0][lane]);
                let p1 = u64::from(PHILOX_M1) * u64::from(c[2][lane]);
                next[0][lane] = ((p1 >> 32) as u32) ^ c[1][lane] ^ k[0];
                next[1][lane] = p1 as u32;
                next[2][lane] = ((p0 >> 32) as u32) ^ c[3][lane] ^ k[1];
                next[3][lane] = p0 as u32;
            }
            c = next;
        }
        for (lane, block) in out.chunks_exact_mut(4).enumerate() {
            for word in 0..4 {
                block[word] = c[word][lane];
            }
        }
    }
}

/// A source of uniform numbers. The augmentation parameter samplers take this trait so tests can
/// script exact values and check the formulas by hand.
pub trait Uniform {
    /// Uniform in [0, 1) with 53 bits of precision.
    fn next_f64(&mut self) -> f64;

    /// Uniform in [lo, hi).
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next_f64()
    }

    /// True with probability `p`.
    fn bernoulli(&mut self, p: f64) -> bool {
        self.next_f64() < p
    }

    /// Uniform integer in [0, n); `n` must be > 0.
    fn below(&mut self, n: u64) -> u64 {
        // 53-bit float scaled: bias is below 2^-20 for n < 2^32, well under anything observable.
        ((self.next_f64() * n as f64) as u64).min(n - 1)
    }
}

/// The stream of one (seed, epoch, sample, operator) tuple.
#[derive(Clone, Debug)]
pub struct SampleRng {
    key: [u32; 2],
    counter: [u32; 4],
    buffer: [u32; 4],
    used: usize,
}

/// Operator id reserved for the per-epoch shuffle.
pub const SHUFFLE_STREAM: u32 = u32::MAX;

impl SampleRng {
    pub fn new(seed: u64, epoch: u32, sample: u64, operator: u32) -> Self {
        SampleRng {
            key: [seed as u32, (seed >> 32) as u32],
            counter: [
                0,
                epoch,
                sample as u32,
                operator ^ (((sample >> 32) as u32) << 16),
            ],
            buffer: [0; 4],
            used: 4,
        }
    }

    /// The 4 words at counter `n` of this stream, independently of what was drawn: operators
    /// that key a draw by position (MlmMask: one block per token) use this, and a GPU kernel
    /// computes the same block from the same key.
    /// The stream's Philox key and counter words 1..3 (word 0 counts blocks): what a GPU
    /// kernel needs to compute [`SampleRng::block`] itself.
    pub fn stream(&self) -> ([u32; 2], [u32; 3]) {
        (
            self.key,
            [self.counter[1], self.counter[2], self.counter[3]],
        )
    }

    /// `out.len()` draws, the same as that many [`SampleRng::next_u32`] calls, with the whole
    /// blocks computed eight at a time in lockstep (vector registers; Dither draws one word per
    /// audio sample).
    pub fn fill_u32(&mut self, out: &mut [u32]) {
        let mut at = 0;
        while self.used < 4 && at < out.len() {
            out[at] = self.next_u32();
            at += 1;
        }
        let mut eights = out[at..].chunks_exact_mut(32);
        for chunk in &mut eights {
            philox_eight(self.counter, self.key, chunk.try_into().unwrap());
            self.counter[0] = self.counter[0].wrapping_add(8);
            at += 32;
        }
        for v in &mut out[at..] {
            *v = self.next_u32();
        }
    }

    pub fn block(&self, n: u32) -> [u32; 4] {
        let mut counter = self.counter;
        counter[0] = n;
        philox4x32(counter, self.key)
    }

    pub fn next_u32(&mut self) -> u32 {
        if self.used == 4 {
            self.buffer = philox4x32(self.counter, self.key);
            self.counter[0] = self.counter[0].wrapping_add(1);
            self.used = 0;
        }
        let v = self.buffer[self.used];
        self.used += 1;
        v
    }
}

impl Uniform for SampleRng {
    fn next_f64(&mut self) -> f64 {
        let hi = u64::from(self.next_u32() >> 5); // 27 bits
        let lo = u64::from(self.next_u32() >> 6); // 26 bits
        ((hi << 26) | lo) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// The sampler order of an epoch: identity, or a Fisher-Yates shuffle keyed by (seed, epoch).
pub fn epoch_order(len: usize, seed: u64, epoch: u32, shuffle: bool) -> Vec<u64> {
    let mut order: Vec<u64> = (0..len as u64).collect();
    if shuffle {
        let mut rng = SampleRng::new(seed, epoch, 0, SHUFFLE_STREAM);
        for i in (1..len).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            order.swap(i, j);
        }
    }
    order
}

/// Stream id reserved for the order of shards (shard-window shuffling).
pub const SHARD_STREAM: u32 = u32::MAX - 2;

/// The order of an epoch over sharded data read `window` shards at a time: the shards in a
/// permutation keyed by (seed, epoch), then each window of `window` consecutive shards' samples
/// in a permutation of their own. Only `window` shards are read at once, at the price of a
/// local shuffle: neighbours come from the same window. `starts`: each shard's first sample
/// (ascending, the first 0); `len`: the number of samples. Without `shuffle`, the identity.
pub fn shard_window_order(
    starts: &[u64],
    len: u64,
    window: usize,
    seed: u64,
    epoch: u32,
    shuffle: bool,
) -> Vec<u64> {
    if !shuffle {
        return (0..len).collect();
    }
    let mut rng = SampleRng::new(seed, epoch, 0, SHARD_STREAM);
    let mut shards: Vec<usize> = (0..starts.len()).collect();
    for i in (1..shards.len()).rev() {
        shards.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let end = |s: usize| starts.get(s + 1).copied().unwrap_or(len);
    let mut order = Vec::with_capacity(len as usize);
    for group in shards.chunks(window.max(1)) {
        let from = order.len();
        for &s in group {
            order.extend(starts[s]..end(s));
        }
        let w = &mut order[from..];
        for i in (1..w.len()).rev() {
            w.swap(i, rng.below(i as u64 + 1) as usize);
        }
    }
    order
}

/// What a rank does when the epoch does not divide evenly among `world` ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Uneven {
    /// Every rank gets ⌈n / world⌉ positions; the last ranks' are padded with positions from
    /// the start of the epoch (those samples are seen twice in the epoch).
    #[default]
    Wrap,
    /// Every rank gets ⌊n / world⌋ positions; the last n mod world are left out this epoch.
    Drop,
}

/// Rank `rank`'s share of an epoch's `order`: a contiguous block (contiguous, so a rank reads
/// its own shards' windows), equal in size on every rank. Samples keep their own indices, so
/// their augmentation does not depend on `world`.
pub fn rank_share(order: &[u64], rank: usize, world: usize, uneven: Uneven) -> Vec<u64> {
    let n = order.len();
    if world <= 1 {
        return order.to_vec();
    }
    let per_rank = match uneven {
        Uneven::Wrap => n.div_ceil(world),
        Uneven::Drop => n / world,
    };
    (rank * per_rank..(rank + 1) * per_rank)
        .map(|p| order[p % n])
        .collect()
}

/// Stream id reserved for the order of bucketed batches.
pub const BUCKET_STREAM: u32 = u32::MAX - 1;

/// Length bucketing: cut `order` into windows of `windows × batch` samples, sort each window by
/// `length` (stably, so equal lengths keep their order), cut it into batches, and (with
/// `shuffle`) shuffle the full batches keyed by (seed, epoch); a final partial batch stays last.
/// Samples of similar length share a batch, so less of it is padding, and the result is still
/// a permutation of `order` and a pure function of (seed, epoch).
pub fn bucketed_order(
    order: &[u64],
    length: impl Fn(u64) -> u64,
    batch: usize,
    windows: usize,
    seed: u64,
    epoch: u32,
    shuffle: bool,
) -> Vec<u64> {
    let mut sorted = Vec::with_capacity(order.len());
    for window in order.chunks((windows * batch).max(1)) {
        let mut w = window.to_vec();
        w.sort_by_key(|&i| length(i));
        sorted.extend(w);
    }
    let mut batches: Vec<&[u64]> = sorted.chunks(batch.max(1)).collect();
    let partial = batches.last().filter(|b| b.len() < batch).copied();
    if partial.is_some() {
        batches.pop();
    }
    if shuffle {
        let mut rng = SampleRng::new(seed, epoch, 0, BUCKET_STREAM);
        for i in (1..batches.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            batches.swap(i, j);
        }
    }
    batches
        .into_iter()
        .chain(partial)
        .flatten()
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn fill_u32_draws_what_next_u32_draws() {
        for (skip, len) in [
            (0, 0),
            (0, 31),
            (0, 32),
            (1, 100),
            (3, 1000),
            (2, 7),
            (0, 4097),
        ] {
            let mut a = super::SampleRng::new(0x1234_5678_9abc, 3, 77, 5);
            let mut b = a.clone();
            for _ in 0..skip {
                assert_eq!(a.next_u32(), b.next_u32());
            }
            let mut filled = vec![0u32; len];
            a.fill_u32(&mut filled);
            let drawn: Vec<u32> = (0..len).map(|_| b.next_u32()).collect();
            assert_eq!(filled, drawn, "skip {skip}, len {len}");
            // And the streams stay in step afterwards.
            assert_eq!(a.next_u32(), b.next_u32());
        }
    }

    use super::*;

    /// Shuffle quality of shard windows against a full permutation: the share of neighbours
    /// (consecutive positions) drawn from the same shard, and how far a sample moves from its
    /// position in the shard-order listing. Numbers in docs/ARCHITECTURE.md come from here
    /// (`cargo test --release --lib shard_window_quality -- --nocapture`).
    #[test]
    fn shard_window_quality_against_a_full_permutation() {
        let (shards, per) = (200u64, 50u64);
        let starts: Vec<u64> = (0..shards).map(|s| s * per).collect();
        let len = shards * per;
        let same_shard = |order: &[u64]| {
            let same = order
                .windows(2)
                .filter(|w| w[0] / per == w[1] / per)
                .count();
            same as f64 / (order.len() - 1) as f64
        };
        let full = epoch_order(len as usize, 9, 0, true);
        let f = same_shard(&full);
        eprintln!(
            "full permutation: neighbours from one shard {f:.4} (1/shards = {:.4})",
            1.0 / shards as f64
        );
        assert!(f < 3.0 / shards as f64);
        for window in [1usize, 2, 4, 8, 16] {
            let order = shard_window_order(&starts, len, window, 9, 0, true);
            let mut sorted = order.clone();
            sorted.sort();
            assert_eq!(sorted, (0..len).collect::<Vec<_>>());
            let w = same_shard(&order);
            eprintln!(
                "window {window:>2} shards: neighbours from one shard {w:.4} (1/K = {:.4})",
                1.0 / window as f64
            );
            // Within a window neighbours share a shard with probability ~1/K.
            assert!(
                (w - 1.0 / window as f64).abs() < 0.05,
                "window {window}: {w}"
            );
        }
        // Different epochs permute shards differently.
        assert_ne!(
            shard_window_order(&starts, len, 4, 9, 0, true),
            shard_window_order(&starts, len, 4, 9, 1, true)
        );
    }

    #[test]
    fn bucketed_order_is_a_reproducible_permutation_of_similar_lengths() {
        let order = epoch_order(103, 1, 0, true);
        let length = |i: u64| (i * 7919) % 500;
        let a = bucketed_order(&order, length, 8, 4, 1, 0, true);
        assert_eq!(a, bucketed_order(&order, length, 8, 4, 1, 0, true));
        assert_ne!(a, bucketed_order(&order, length, 8, 4, 1, 1, true));
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..103).collect::<Vec<_>>(), "a permutation");
        // The last batch (103 = 12 × 8 + 7) is the partial one, from the last window.
        let last: Vec<u64> = a[96..].to_vec();
        let window: Vec<u64> = order[96..].to_vec();
        assert!(last.iter().all(|i| window.contains(i)));
        // Within a batch, lengths span far less than across the dataset.
        let spread = |b: &[u64]| {
            let l: Vec<u64> = b.iter().map(|&i| length(i)).collect();
            l.iter().max().unwrap() - l.iter().min().unwrap()
        };
        let mean = a.chunks(8).map(spread).sum::<u64>() / 13;
        let plain = order.chunks(8).map(spread).sum::<u64>() / 13;
        assert!(mean * 3 < plain, "bucketed spread {mean} vs plain {plain}");
    }

    #[test]
    fn philox_known_answer() {
        // Known-answer vectors from the Random123 distribution (kat_vectors, philox4x32_10).
        assert_eq!(
            philox4x32([0, 0, 0, 0], [0, 0]),
            [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
        );
        assert_eq!(
            philox4x32([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]
        );
        assert_eq!(
            philox4x32(
                [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
                [0xa4093822, 0x299f31d0]
            ),
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
        );
    }

    #[test]
    fn streams_differ_by_every_key_part() {
        let first = |s, e, i, o| SampleRng::new(s, e, i, o).next_u32();
        let base = first(1, 2, 3, 4);
        assert_ne!(base, first(9, 2, 3, 4));
        assert_ne!(base, first(1, 9, 3, 4));
        assert_ne!(base, first(1, 2, 9, 4));
        assert_ne!(base, first(1, 2, 3, 9));
        assert_eq!(base, first(1, 2, 3, 4));
    }

    #[test]
    fn uniform_is_in_range_and_roughly_flat() {
        let mut rng = SampleRng::new(7, 0, 0, 0);
        let mut bins = [0u32; 10];
        for _ in 0..100_000 {
            let x = rng.next_f64();
            assert!((0.0..1.0).contains(&x));
            bins[(x * 10.0) as usize] += 1;
        }
        for b in bins {
            assert!((9_000..11_000).contains(&b), "bins {bins:?}");
        }
    }

    #[test]
    fn shuffle_is_a_permutation_and_depends_on_epoch() {
        let a = epoch_order(1000, 5, 0, true);
        let b = epoch_order(1000, 5, 1, true);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..1000).collect::<Vec<_>>());
        assert_ne!(a, b);
        assert_eq!(a, epoch_order(1000, 5, 0, true));
        assert_eq!(epoch_order(10, 5, 0, false), (0..10).collect::<Vec<_>>());
    }
}
