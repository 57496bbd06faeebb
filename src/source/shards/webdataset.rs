//! WebDataset shards as a [`Source`]: samples numbered shard by shard in the order the shards
//! are named, each read as one range of its shard (local `pread`, or a range request through
//! the read-ahead for remote shards).

use super::manifest::{Manifest, ShardIndex};
use super::read_ahead::{RangeCache, ReadAhead, SampleRanges};
use super::store::{IoConfig, Object};
use crate::error::{Error, Result};
use crate::source::{Source, NO_LABEL};
use std::ops::Range;
use std::sync::Arc;

pub struct WebDataset {
    inner: Arc<Inner>,
    /// Remote shards only: the fetched ranges shared by every pass.
    cache: Option<Arc<RangeCache>>,
    config: Arc<IoConfig>,
    describe: String,
}

struct Inner {
    shards: Vec<ShardIndex>,
    objects: Vec<Object>,
    /// Index of each shard's first sample, and the total at the end.
    starts: Vec<u64>,
}

impl Inner {
    /// (shard, sample within it) of dataset sample `index`.
    fn locate(&self, index: u64) -> (usize, usize) {
        let shard = self.starts.partition_point(|&s| s <= index) - 1;
        (shard, (index - self.starts[shard]) as usize)
    }
}

impl SampleRanges for Inner {
    fn sample_range(&self, index: u64) -> (u32, Range<u64>) {
        let (s, i) = self.locate(index);
        let e = &self.shards[s].samples[i];
        (s as u32, e.offset..e.offset + e.length)
    }

    fn shard_object(&self, shard: u32) -> &Object {
        &self.objects[shard as usize]
    }
}

impl WebDataset {
    /// The dataset a JSON file at `location` describes: a sluice manifest, or an MDS
    /// `index.json` (its shards indexed now, each read once).
    pub fn from_json(location: &str, config: IoConfig) -> Result<WebDataset> {
        config.validate()?;
        let config = Arc::new(config);
        let bytes = Object::open(location, &config)?.read_all()?;
        let json: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Source(format!("{location}: not JSON: {e}")))?;
        if !super::mds::is_mds_index(&json) {
            let mut manifest = Manifest::from_json(location, json)?;
            manifest.resolve(location);
            return Self::new(manifest, &config, format!("WebDataset manifest {location}"));
        }
        let manifest = super::mds::manifest(location, json, &config)?;
        Self::new(manifest, &config, format!("MDS {location}"))
    }

    /// The dataset a manifest describes (its shard URLs resolved against `location`).
    pub fn from_manifest(location: &str, config: IoConfig) -> Result<WebDataset> {
        config.validate()?;
        let config = Arc::new(config);
        let mut manifest = Manifest::load(location, &config)?;
        manifest.resolve(location);
        Self::new(manifest, &config, format!("WebDataset manifest {location}"))
    }

    /// The dataset of the shards at `locations`, indexed now (one pass over every shard; a
    /// manifest written by `sluice index` skips it).
    pub fn scan(locations: &[String], config: IoConfig) -> Result<WebDataset> {
        Self::scan_with_progress(locations, config, &|_| {})
    }

    /// [`WebDataset::scan`], calling `progress(shards done)` as it goes.
    pub fn scan_with_progress(
        locations: &[String],
        config: IoConfig,
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<WebDataset> {
        config.validate()?;
        let config = Arc::new(config);
        let manifest = Manifest::build(locations, &config, progress)?;
        let what = match locations {
            [one] => one.clone(),
            [first, .., last] => format!("{first} .. {last}"),
            [] => String::new(),
        };
        Self::new(manifest, &config, format!("WebDataset {what}"))
    }

    pub(crate) fn new(manifest: Manifest, config: &Arc<IoConfig>, what: String) -> Result<Self> {
        if manifest.shards.is_empty() {
            return Err(Error::Source(format!("{what}: no shards")));
        }
        let objects = manifest
            .shards
            .iter()
            .map(|s| Object::open(&s.url, config).map(|o| o.expecting(&s.etag)))
            .collect::<Result<Vec<_>>>()?;
        // Local shards are checked against the manifest now (a stat each); remote reads carry
        // the ETag and the store refuses them if the object changed.
        for (shard, object) in manifest.shards.iter().zip(&objects) {
            if let Object::Local(_) = object {
                let info = object.info()?;
                if info.size != shard.size || info.etag != shard.etag {
                    return Err(Error::Source(format!(
                        "{}: the shard changed since it was indexed (size {} vs {}); \
                         run `sluice index` again",
                        shard.url, info.size, shard.size
                    )));
                }
            }
        }
        let mut starts = vec![0u64];
        for s in &manifest.shards {
            starts.push(starts.last().unwrap() + s.samples.len() as u64);
        }
        let remote = objects.iter().any(|o| matches!(o, Object::Remote { .. }));
        let total = *starts.last().unwrap();
        Ok(WebDataset {
            describe: format!("{what} ({} shards, {total} samples)", manifest.shards.len()),
            cache: remote.then(|| Arc::new(RangeCache::new(config.clone()))),
            config: config.clone(),
            inner: Arc::new(Inner {
                shards: manifest.shards,
                objects,
                starts,
            }),
        })
    }

    /// Range requests made and bytes fetched so far (remote shards; local reads are not
    /// counted).
    pub fn io_counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        match &self.cache {
            Some(c) => (c.requests.load(Relaxed), c.bytes_fetched.load(Relaxed)),
            None => (0, 0),
        }
    }

    /// The most bytes the read-ahead ever held at once (fetched or in flight, not yet
    /// consumed): at most the window plus one sample. 0 for local shards.
    pub fn peak_read_ahead_bytes(&self) -> u64 {
        self.cache.as_ref().map_or(0, |c| c.peak_held_bytes())
    }

    /// How remote shards are read.
    pub fn io_config(&self) -> &IoConfig {
        &self.config
    }

    /// A digest of the shards (location names, sizes, version tags, sample counts): what a
    /// saved state is checked against.
    pub fn fingerprint_parts(&self) -> Vec<String> {
        self.inner
            .shards
            .iter()
            .map(|s| {
                let name = s.url.rsplit('/').next().unwrap_or(&s.url);
                format!("{name}:{}:{}:{}", s.size, s.etag, s.samples.len())
            })
            .collect()
    }
}

impl Source for WebDataset {
    fn len(&self) -> usize {
        *self.inner.starts.last().unwrap() as usize
    }

    fn label(&self, index: u64) -> i64 {
        let (s, i) = self.inner.locate(index);
        self.inner.shards[s].samples[i].label.unwrap_or(NO_LABEL)
    }

    fn origin(&self, index: u64) -> String {
        let (s, i) = self.inner.locate(index);
        let e = &self.inner.shards[s].samples[i];
        format!(
            "{}:{}.{} (bytes {}..{})",
            self.inner.shards[s].url,
            e.key,
            e.ext,
            e.offset,
            e.offset + e.length
        )
    }

    fn text(&self, index: u64) -> Option<&str> {
        let (s, i) = self.inner.locate(index);
        self.inner.shards[s].samples[i].text.as_deref()
    }

    fn length_hint(&self, index: u64) -> Option<u64> {
        let (s, i) = self.inner.locate(index);
        Some(self.inner.shards[s].samples[i].length)
    }

    fn read(&self, index: u64, buf: &mut Vec<u8>) -> std::io::Result<()> {
        let (shard, range) = self.inner.sample_range(index);
        let object = &self.inner.objects[shard as usize];
        let bytes = match &self.cache {
            Some(cache) => cache.read(object, shard, range),
            None => object.read_range(range),
        };
        *buf = bytes.map_err(std::io::Error::other)?;
        Ok(())
    }

    fn shard_starts(&self) -> Option<&[u64]> {
        Some(&self.inner.starts[..self.inner.starts.len() - 1])
    }

    fn read_ahead(&self) -> Option<ReadAhead> {
        let cache = self.cache.as_ref()?;
        Some(ReadAhead::new(cache.clone(), self.inner.clone()))
    }

    fn fingerprint(&self) -> String {
        self.fingerprint_parts().join("|")
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }
}
