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
/// class of `need`, so nearby larger requests fit too. None when it fits.
pub fn grow_words(have: usize, need: usize) -> Option<usize> {
    (need > have).then(|| size_class(need as u64 * 4).div_ceil(4) as usize)
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
    pub fn grow_for(&mut self, staged: usize, work_bytes: &[Option<u64>]) -> Growth {
        let mut growth = Growth {
            pinned: grow_words(self.pinned, staged),
            staged: grow_words(self.staged, staged),
            work: Vec::new(),
        };
        if self.work.len() < work_bytes.len() {
            self.work.resize(work_bytes.len(), None);
        }
        for (i, bytes) in work_bytes.iter().enumerate() {
            let Some(bytes) = bytes else { continue };
            let need = (*bytes as usize).div_ceil(4).max(1);
            if let Some(words) = grow_words(self.work[i].unwrap_or(0), need) {
                growth.work.push((i, words));
                self.work[i] = Some(words);
            }
        }
        if let Some(w) = growth.pinned {
            self.pinned = w;
        }
        if let Some(w) = growth.staged {
            self.staged = w;
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
        let mut slot = SlotCapacity::default();
        let g = slot.grow_for(1000, &[None, Some(64), None, Some(40_000)]);
        assert_eq!(g.pinned, Some(1024));
        assert_eq!(g.staged, Some(1024));
        assert_eq!(g.work, [(1, 64), (3, 10240)]);
        // Slightly larger, same class: nothing; smaller: nothing.
        assert_eq!(
            slot.grow_for(1010, &[None, Some(64), None, Some(40_100)]),
            Growth::default()
        );
        assert_eq!(
            slot.grow_for(10, &[None, Some(4), None, Some(4)]),
            Growth::default()
        );
        let g = slot.grow_for(1100, &[None, Some(64), None, Some(40_000), Some(8)]);
        assert_eq!(
            (g.pinned, g.staged, g.work.clone()),
            (Some(1152), Some(1152), vec![(4, 64)])
        );
        assert_eq!((g.pinned_allocations(), g.device_allocations()), (1, 2));
    }
}
