//! Device buffers reused across batches: after warm-up a steady stream of same-shaped batches
//! allocates nothing on the device.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::backend::size_class::size_class;

pub(super) struct DevicePool {
    free: Mutex<HashMap<(u32, u64), Vec<wgpu::Buffer>>>,
    allocations: AtomicU64,
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
