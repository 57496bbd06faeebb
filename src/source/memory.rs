//! Encoded samples held in memory (tests, caches, data produced by the training process itself).

use super::Source;
use std::sync::Arc;

#[derive(Debug, Clone, Default)]
pub struct InMemory {
    samples: Arc<Vec<(Vec<u8>, i64)>>,
}

impl InMemory {
    /// `samples`: (encoded image bytes, label).
    pub fn new(samples: Vec<(Vec<u8>, i64)>) -> Self {
        InMemory {
            samples: Arc::new(samples),
        }
    }
}

impl Source for InMemory {
    fn len(&self) -> usize {
        self.samples.len()
    }
    fn label(&self, index: u64) -> i64 {
        self.samples[index as usize].1
    }
    fn origin(&self, index: u64) -> String {
        format!("memory[{index}]")
    }
    fn read(&self, index: u64, buf: &mut Vec<u8>) -> std::io::Result<()> {
        buf.clear();
        buf.extend_from_slice(&self.samples[index as usize].0);
        Ok(())
    }
    fn describe(&self) -> String {
        format!("InMemory ({} samples)", self.len())
    }
}
