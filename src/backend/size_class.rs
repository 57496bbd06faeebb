//! How reused GPU memory grows: to size classes, never to the exact size of the request.
//!
//! Batch sizes in bytes vary (decoded photos differ in size; RandomResizedCrop's intermediate
//! rows differ per crop), so memory that grows to exactly the largest request seen grows again
//! at every new maximum: a re-pin (`cuMemFreeHost` + `cuMemHostAlloc`, milliseconds) in steady
//! state. Rounded up to one of 16 steps per power of two, a buffer absorbs the variation of
//! similar batches while wasting under 1/8 of its size. The wgpu pool keys its free lists by
//! these classes; the CUDA slots grow by them ([`SlotCapacity`]).

/// Bytes rounded up to a size class (at least 256).
pub fn size_class(bytes: u64) -> u64 {
    let bytes = bytes.max(256);
    let step = (bytes.next_power_of_two() / 16).max(256);
    bytes.div_ceil(step) * step
}

/// A buffer's new capacity in 32-bit words when `need` words do not fit in `have`: the size
/// class of `need` the first time; a buffer that has to grow again has seen sizes vary, so it
/// takes a quarter more headroom (as a Vec doubles), which bounds how often it can regrow.
/// None when it fits.
pub fn grow_words(have: usize, need: usize) -> Option<usize> {
    let target = if have == 0 { need } else { need + need / 4 };
    (need > have).then(|| size_class(target as u64 * 4).div_ceil(4) as usize)
}

/// What one CUDA staging slot holds, in 32-bit words: pinned host memory, the device's staged
/// buffer (records + packed input) and one device buffer per work buffer (None: unused). The
/// transfer engine asks [`SlotCapacity::grow_for`] before every batch and allocates exactly
/// what it returns, so this bookkeeping is the policy.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SlotCapacity {
    pub pinned: usize,
    pub staged: usize,
    pub work: Vec<Option<usize>>,
}

/// Allocations [`SlotCapacity::grow_for`] decided on: (which, new words).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Growth {
    pub pinned: Option<usize>,
    pub staged: Option<usize>,
    pub work: Vec<(usize, usize)>,
}

impl Growth {
    pub fn pinned_allocations(&self) -> u64 {
        u64::from(self.pinned.is_some())
    }
    pub fn device_allocations(&self) -> u64 {
        u64::from(self.staged.is_some()) + self.work.len() as u64
    }
}

impl SlotCapacity {
    /// Grow to hold a batch of `staged` words (pinned and on the device) and work buffers of
    /// `work_bytes` (None: a buffer the batch does not allocate), recording the new capacities.
    /// A buffer that must grow goes at least to the ring's high-water mark `ring` (the largest
    /// capacity any slot has for it), which this raises: once one slot has grown for a larger
    /// batch, the others grow once to the same size instead of class by class.
    pub fn grow_for(
        &mut self,
        staged: usize,
        work_bytes: &[Option<u64>],
        ring: &mut SlotCapacity,
    ) -> Growth {
        let grow = |have: &mut usize, high: &mut usize, need: usize| {
            let words = grow_words(*have, need)?.max(*high);
            *have = words;
            *high = words;
            Some(words)
        };
        let mut growth = Growth {
            pinned: grow(&mut self.pinned, &mut ring.pinned, staged),
            staged: grow(&mut self.staged, &mut ring.staged, staged),
            work: Vec::new(),
        };
        let n = work_bytes.len().max(self.work.len());
        self.work.resize(n, None);
        ring.work.resize(n.max(ring.work.len()), None);
        for (i, bytes) in work_bytes.iter().enumerate() {
            let Some(bytes) = bytes else { continue };
            let need = (*bytes as usize).div_ceil(4).max(1);
            let (mut have, mut high) = (self.work[i].unwrap_or(0), ring.work[i].unwrap_or(0));
            if let Some(words) = grow(&mut have, &mut high, need) {
                growth.work.push((i, words));
                self.work[i] = Some(words);
                ring.work[i] = Some(high);
            }
        }
        growth
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_classes_cover_the_request_with_little_waste() {
        for bytes in [1, 255, 256, 257, 1000, 150_528, 19_267_584, 100 << 20] {
            let c = size_class(bytes);
            assert!(c >= bytes && c >= 256, "{bytes} -> {c}");
            assert!(c - bytes < bytes / 8 || c <= 4096, "{bytes} -> {c}");
            assert_eq!(c % 4, 0);
        }
    }

    #[test]
    fn slots_grow_once_per_class_and_never_shrink() {
        let mut ring = SlotCapacity::default();
        let mut slot = SlotCapacity::default();
        let g = slot.grow_for(1000, &[None, Some(64), None, Some(40_000)], &mut ring);
        assert_eq!(g.pinned, Some(1024));
        assert_eq!(g.staged, Some(1024));
        assert_eq!(g.work, [(1, 64), (3, 10240)]);
        // Slightly larger, same class: nothing; smaller: nothing.
        let same = slot.grow_for(1010, &[None, Some(64), None, Some(40_100)], &mut ring);
        assert_eq!(same, Growth::default());
        let smaller = slot.grow_for(10, &[None, Some(4), None, Some(4)], &mut ring);
        assert_eq!(smaller, Growth::default());
        let g = slot.grow_for(
            1100,
            &[None, Some(64), None, Some(40_000), Some(8)],
            &mut ring,
        );
        assert_eq!(
            (g.pinned, g.staged, g.work.clone()),
            // Regrowth: 1100 words and a quarter more, rounded up to a class.
            (Some(1408), Some(1408), vec![(4, 64)])
        );
        assert_eq!((g.pinned_allocations(), g.device_allocations()), (1, 2));
        // Another slot's first small batch grows straight to the ring's high-water mark.
        let mut other = SlotCapacity::default();
        let g = other.grow_for(10, &[None, Some(4), None, Some(4)], &mut ring);
        assert_eq!((g.pinned, g.staged), (Some(1408), Some(1408)));
        assert_eq!(g.work, [(1, 64), (3, 10240)]);
        assert_eq!(
            other.grow_for(1100, &[None, Some(64), None, Some(40_000)], &mut ring),
            Growth::default()
        );
    }
}
