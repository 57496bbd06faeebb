//! Device buffers reused across batches: after warm-up a steady stream of same-shaped batches
//! allocates nothing on the device.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

pub(super) struct DevicePool {
    free: Mutex<HashMap<(u32, u64), Vec<wgpu::Buffer>>>,
    allocations: AtomicU64,
}

/// Sizes are rounded up to one of 16 steps per power of two (at least 256 bytes), so similar
/// requests share buffers while wasting under 1/8 of the memory of large ones.
fn size_class(bytes: u64) -> u64 {
    let bytes = bytes.max(256);
    let step = (bytes.next_power_of_two() / 16).max(256);
    bytes.div_ceil(step) * step
}

impl DevicePool {
    pub fn new() -> Self {
        DevicePool {
            free: Mutex::new(HashMap::new()),
            allocations: AtomicU64::new(0),
        }
    }

    /// A buffer of at least `bytes` with exactly `usage`.
    pub fn take(
        &self,
        device: &wgpu::Device,
        usage: wgpu::BufferUsages,
        bytes: u64,
    ) -> wgpu::Buffer {
        let size = size_class(bytes);
        let key = (usage.bits(), size);
        if let Some(buffer) = self.free.lock().unwrap().get_mut(&key).and_then(Vec::pop) {
            return buffer;
        }
        self.allocations.fetch_add(1, Ordering::Relaxed);
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("sluice pooled"),
            size,
            usage,
            mapped_at_creation: false,
        })
    }

    pub fn give(&self, buffer: wgpu::Buffer) {
        let key = (buffer.usage().bits(), buffer.size());
        self.free
            .lock()
            .unwrap()
            .entry(key)
            .or_default()
            .push(buffer);
    }

    /// Device buffers created so far.
    pub fn allocations(&self) -> u64 {
        self.allocations.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn size_classes_cover_the_request_with_little_waste() {
        for bytes in [1, 255, 256, 257, 1000, 150_528, 19_267_584, 100 << 20] {
            let c = size_class(bytes);
            assert!(c >= bytes && c >= 256, "{bytes} -> {c}");
            assert!(c - bytes < bytes / 8 || c <= 4096, "{bytes} -> {c}");
            assert_eq!(c % 4, 0);
        }
    }
}
