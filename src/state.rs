//! A pipeline's position as a small serializable value: a run stopped after any batch resumes
//! from it and delivers exactly the batches an uninterrupted run would have delivered from
//! there (every batch is a pure function of the data, the declaration, seed, epoch and
//! position). The fingerprint refuses a state saved by a pipeline over other data or with
//! another declaration.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// The format this build writes and reads.
pub const STATE_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineState {
    pub version: u32,
    /// xxh3 of the data (shards' names, sizes, version tags) and of everything that decides
    /// the batches (operators, batch size, shuffling, bucketing, shard window, ranks).
    pub fingerprint: String,
    pub seed: u64,
    pub epoch: u32,
    /// Batches of `epoch` already delivered (the next one to deliver).
    pub position: u64,
    pub rank: usize,
    pub world: usize,
    /// A packed pipeline's token stream at `position`, so a resume rebuilds it from the few
    /// chunks it holds instead of replaying the epoch (absent: replay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packed: Option<PackedPosition>,
}

/// Where a packed pipeline's token stream stood between two batches. The stream is always the
/// undelivered tail of the tokens of chunks `0..next_chunk` (a chunk: `batch_size` documents
/// in epoch order, tokenized together), so three numbers rebuild it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackedPosition {
    /// The first chunk with tokens not yet delivered.
    pub chunk: u64,
    /// That chunk's tokens already delivered.
    pub skip_tokens: u64,
    /// Chunks tokenized so far.
    pub next_chunk: u64,
}

impl PipelineState {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a state serializes")
    }

    pub fn from_json(text: &str) -> Result<PipelineState> {
        let state: PipelineState = serde_json::from_str(text)
            .map_err(|e| Error::InvalidPipeline(format!("not a pipeline state: {e}")))?;
        if state.version != STATE_VERSION {
            return Err(Error::InvalidPipeline(format!(
                "pipeline state version {}, this build reads {STATE_VERSION}",
                state.version
            )));
        }
        Ok(state)
    }

    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        std::fs::write(path, self.to_json()).map_err(|e| Error::io(path.display().to_string(), e))
    }

    pub fn load(path: &std::path::Path) -> Result<PipelineState> {
        let text =
            std::fs::read_to_string(path).map_err(|e| Error::io(path.display().to_string(), e))?;
        Self::from_json(&text)
            .map_err(|e| Error::InvalidPipeline(format!("{}: {e}", path.display())))
    }
}

/// The fingerprint of a pipeline over `source` with `ops` (decoder and operators, as `Debug`
/// writes them) and `settings` (see
/// [`PipelineState::fingerprint`]). Threads, prefetch, placement and fusion are left out:
/// they never change the bytes (approximate decode does, so it is in).
pub(crate) fn fingerprint(
    source: &dyn crate::source::Source,
    ops: &str,
    s: &crate::pipeline::Settings,
) -> String {
    use std::hash::Hasher;
    let mut h = twox_hash::XxHash3_64::new();
    h.write(source.fingerprint().as_bytes());
    h.write(ops.as_bytes());
    h.write(
        format!(
            "{}|{}|{}|{}|{}|{}|{}|{:?}|{}|{}|{}",
            s.batch_size,
            s.drop_last,
            s.shuffle,
            s.seed,
            s.bucket_windows,
            s.shard_window,
            s.world,
            s.uneven,
            s.pad_multiple,
            s.pad_length,
            s.pad_id
        )
        .as_bytes(),
    );
    // Approximate decode changes pixels; added only when on, so fingerprints of exact
    // pipelines saved before it existed still match.
    if s.approx_decode {
        h.write(b"|approx-decode");
    }
    format!("{:016x}", h.finish())
}
