//! The shard manifest `sluice index` writes: per shard its location, size, version tag and
//! every sample's key, data offset and length (plus label and transcript), so opening a
//! dataset of any size costs one read instead of a listing and a scan of every shard.

use super::store::{IoConfig, Object};
use super::tar_index;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The manifest format this build writes and reads.
pub const FORMAT: &str = "sluice-shards/1";
/// The manifest's file name when written next to the shards.
pub const FILE_NAME: &str = "sluice-index.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub shards: Vec<ShardIndex>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardIndex {
    /// The shard's location: relative to the manifest's own location, or absolute.
    pub url: String,
    pub size: u64,
    pub etag: String,
    pub samples: Vec<SampleEntry>,
}

/// One sample of a shard: where its data member lies, and its metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SampleEntry {
    pub key: String,
    /// The data member's extension (jpg, png, wav, flac, txt...).
    pub ext: String,
    pub offset: u64,
    pub length: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

impl Manifest {
    /// Index the shards at `locations` (local paths or URLs), `progress(done)` after each.
    /// Shards are indexed in parallel; a remote shard is read whole once.
    pub fn build(
        locations: &[String],
        config: &Arc<IoConfig>,
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<Manifest> {
        use rayon::prelude::*;
        let done = std::sync::atomic::AtomicUsize::new(0);
        let shards = locations
            .par_iter()
            .map(|location| {
                let shard = index_shard(location, config)?;
                progress(done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1);
                Ok(shard)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Manifest {
            format: FORMAT.to_string(),
            shards,
        })
    }

    /// Read the manifest at `location`.
    pub fn load(location: &str, config: &Arc<IoConfig>) -> Result<Manifest> {
        let bytes = Object::open(location, config)?.read_all()?;
        let json = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Source(format!("{location}: not a shard manifest: {e}")))?;
        Self::from_json(location, json)
    }

    /// The manifest in `json` (read from `location`, named in errors).
    pub fn from_json(location: &str, json: serde_json::Value) -> Result<Manifest> {
        let manifest: Manifest = serde_json::from_value(json)
            .map_err(|e| Error::Source(format!("{location}: not a shard manifest: {e}")))?;
        if manifest.format != FORMAT {
            return Err(Error::Source(format!(
                "{location}: manifest format `{}`, this build reads `{FORMAT}`",
                manifest.format
            )));
        }
        Ok(manifest)
    }

    /// Write the manifest to `location`, shard URLs made relative to it where they share its
    /// directory.
    pub fn save(&self, location: &str, config: &Arc<IoConfig>) -> Result<()> {
        let dir = parent(location);
        let mut relative = self.clone();
        for shard in &mut relative.shards {
            if let Some(rest) = shard.url.strip_prefix(&dir) {
                if !rest.is_empty() && !rest.contains('/') {
                    shard.url = rest.to_string();
                }
            }
        }
        let bytes = serde_json::to_vec(&relative).expect("a manifest serializes");
        Object::open(location, config)?.write_all(bytes)
    }

    /// Shard locations resolved against the manifest's location.
    pub fn resolve(&mut self, location: &str) {
        let dir = parent(location);
        for shard in &mut self.shards {
            let absolute = super::store::is_url(&shard.url) || shard.url.starts_with('/');
            if !absolute {
                shard.url = format!("{dir}{}", shard.url);
            }
        }
    }
}

/// `location` up to and including its last `/` (empty for a bare file name).
fn parent(location: &str) -> String {
    location
        .rfind('/')
        .map_or(String::new(), |i| location[..=i].to_string())
}

/// Index one shard: scan its headers (a local file is seeked through; a remote one read
/// whole), then group samples.
pub fn index_shard(location: &str, config: &Arc<IoConfig>) -> Result<ShardIndex> {
    let object = Object::open(location, config)?;
    let info = object.info()?;
    let samples = match &object {
        Object::Local(path) => {
            let file = std::fs::File::open(path).map_err(|e| Error::io(location, e))?;
            let members = tar_index::members(std::io::BufReader::new(file), info.size, location)?;
            tar_index::samples(&members, location, |offset, size| {
                object.read_range(offset..offset + size)
            })?
        }
        Object::Remote { .. } => {
            let bytes = object.read_range(0..info.size)?;
            let members =
                tar_index::members(std::io::Cursor::new(&bytes[..]), info.size, location)?;
            tar_index::samples(&members, location, |offset, size| {
                Ok(bytes[offset as usize..(offset + size) as usize].to_vec())
            })?
        }
    };
    Ok(ShardIndex {
        url: location.to_string(),
        size: info.size,
        etag: info.etag,
        samples,
    })
}
