//! Sharded datasets, local or on object storage: WebDataset tar shards named by a path, a URL
//! or a brace pattern (`s3://bucket/train-{000000..000127}.tar`), or described by the manifest
//! `sluice index` writes; and the tools that make shards and manifests.

mod manifest;
mod mds;
mod pattern;
mod read_ahead;
mod store;
mod tar_index;
mod webdataset;
mod writer;

pub use manifest::{index_shard, Manifest, SampleEntry, ShardIndex, FILE_NAME as MANIFEST_NAME};
pub use mds::INDEX_NAME as MDS_INDEX_NAME;
pub use pattern::expand;
pub use read_ahead::ReadAhead;
pub use store::{is_url, parse_size, IoConfig, Object, ObjectInfo};
pub use tar_index::{key_and_extension, members, Member, DATA_EXTENSIONS};
pub use webdataset::WebDataset;
pub use writer::{write_shards, ShardWriterSpec};

use crate::error::{Error, Result};
use std::path::Path;

/// Whether `data` names sharded data: a URL, a brace pattern, a `.tar` file, a manifest, an
/// MDS `index.json`, or a local folder holding `.tar` shards, a manifest or an MDS index.
pub fn is_sharded(data: &str) -> bool {
    if is_url(data) || data.contains('{') || data.ends_with(".tar") {
        return true;
    }
    let path = Path::new(data);
    if path.is_file() {
        return data.ends_with(MANIFEST_NAME) || data.ends_with(mds::INDEX_NAME);
    }
    path.join(MANIFEST_NAME).is_file()
        || path.join(mds::INDEX_NAME).is_file()
        || local_shards(path).is_ok_and(|s| !s.is_empty())
}

/// The `.tar` files of a local folder, sorted by name.
fn local_shards(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut shards: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "tar") && p.is_file())
        .map(|p| p.display().to_string())
        .collect();
    shards.sort();
    Ok(shards)
}

/// The shard locations `data` names (without reading them): a pattern's expansion, one shard,
/// or a local folder's `.tar` files.
pub fn shard_locations(data: &str) -> Result<Vec<String>> {
    let path = Path::new(data);
    if !is_url(data) && path.is_dir() {
        let shards = local_shards(path).map_err(|e| Error::io(data, e))?;
        if shards.is_empty() {
            return Err(Error::Source(format!(
                "{data}: no .tar shards in this folder"
            )));
        }
        return Ok(shards);
    }
    expand(data)
}

/// Open the sharded dataset `data` (see [`is_sharded`]): through its manifest when there is
/// one (given, or `sluice-index.json` in a local folder), an MDS dataset through its
/// `index.json`, else WebDataset shards by scanning them.
pub fn open_shards(data: &str, config: IoConfig) -> Result<WebDataset> {
    open_shards_with_progress(data, config, &|_, _| {})
}

/// [`open_shards`], calling `progress(shards scanned, shards)` when it has to scan.
pub fn open_shards_with_progress(
    data: &str,
    config: IoConfig,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<WebDataset> {
    if data.ends_with(".json") {
        return WebDataset::from_json(data, config);
    }
    let path = Path::new(data);
    if !is_url(data) {
        for name in [MANIFEST_NAME, mds::INDEX_NAME] {
            if path.join(name).is_file() {
                return WebDataset::from_json(&path.join(name).display().to_string(), config);
            }
        }
    }
    let locations = shard_locations(data)?;
    let total = locations.len();
    WebDataset::scan_with_progress(&locations, config, &|done| progress(done, total))
}
