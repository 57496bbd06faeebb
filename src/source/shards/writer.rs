//! `sluice shard`: write any source as WebDataset tar shards (ustar, deterministic headers:
//! the same source gives the same bytes), plus their manifest.

use super::manifest::{index_shard, Manifest, FILE_NAME};
use super::store::IoConfig;
use crate::error::{Error, Result};
use crate::source::{Source, NO_LABEL};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct ShardWriterSpec {
    /// A shard is closed once it holds this many bytes (a sample never spans shards).
    pub shard_bytes: u64,
    /// File names: `{prefix}-{000000}.tar`.
    pub prefix: String,
}

impl Default for ShardWriterSpec {
    fn default() -> Self {
        ShardWriterSpec {
            shard_bytes: 64 << 20,
            prefix: "shard".into(),
        }
    }
}

/// The extension of a sample's data member, from its first bytes.
pub(crate) fn data_extension(bytes: &[u8]) -> &'static str {
    match bytes {
        [0xFF, 0xD8, ..] => "jpg",
        [0x89, b'P', b'N', b'G', ..] => "png",
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'A', b'V', b'E', ..] => "wav",
        [b'f', b'L', b'a', b'C', ..] => "flac",
        _ => "txt",
    }
}

/// Write `source`'s samples, in order, into shards in `out` (created), then its manifest
/// (`sluice-index.json`). `progress(samples done)`. Returns the shard paths.
pub fn write_shards(
    source: &dyn Source,
    out: &Path,
    spec: &ShardWriterSpec,
    progress: &dyn Fn(u64),
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out.display().to_string(), e))?;
    let mut shards: Vec<PathBuf> = Vec::new();
    let mut builder: Option<(tar::Builder<std::io::BufWriter<std::fs::File>>, u64)> = None;
    let mut buf = Vec::new();
    let io = |path: &Path| {
        let p = path.display().to_string();
        move |e: std::io::Error| Error::io(p, e)
    };
    for index in 0..source.len() as u64 {
        source
            .read(index, &mut buf)
            .map_err(|e| Error::io(source.origin(index), e))?;
        if buf.is_empty() {
            return Err(Error::Source(format!(
                "{}: empty sample (a shard member may not be empty)",
                source.origin(index)
            )));
        }
        let full = builder
            .as_ref()
            .is_some_and(|(_, bytes)| *bytes + buf.len() as u64 > spec.shard_bytes);
        if full {
            let (b, _) = builder.take().unwrap();
            finish(b, shards.last().unwrap())?;
        }
        if builder.is_none() {
            let path = out.join(format!("{}-{:06}.tar", spec.prefix, shards.len()));
            let file = std::fs::File::create(&path).map_err(io(&path))?;
            builder = Some((tar::Builder::new(std::io::BufWriter::new(file)), 0));
            shards.push(path);
        }
        let (b, bytes) = builder.as_mut().unwrap();
        let key = format!("{index:09}");
        let shard = shards.last().unwrap();
        let mut add = |name: String, data: &[u8]| -> Result<u64> {
            let mut header = tar::Header::new_ustar();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(0);
            header.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut header, &name, data).map_err(io(shard))?;
            Ok(512 + (data.len() as u64).div_ceil(512) * 512)
        };
        *bytes += add(format!("{key}.{}", data_extension(&buf)), &buf)?;
        let label = source.label(index);
        if label != NO_LABEL {
            *bytes += add(format!("{key}.cls"), label.to_string().as_bytes())?;
        }
        if let Some(text) = source.text(index).filter(|t| !t.is_empty()) {
            *bytes += add(format!("{key}.txt"), text.as_bytes())?;
        }
        progress(index + 1);
    }
    if let Some((b, _)) = builder {
        finish(b, shards.last().unwrap())?;
    }
    let locations: Vec<String> = shards.iter().map(|p| p.display().to_string()).collect();
    let config = Arc::new(IoConfig::default());
    let manifest = Manifest {
        format: super::manifest::FORMAT.to_string(),
        shards: locations
            .iter()
            .map(|l| index_shard(l, &config))
            .collect::<Result<_>>()?,
    };
    manifest.save(&out.join(FILE_NAME).display().to_string(), &config)?;
    Ok(shards)
}

fn finish(builder: tar::Builder<std::io::BufWriter<std::fs::File>>, path: &Path) -> Result<()> {
    use std::io::Write;
    let error = |e| Error::io(path.display().to_string(), e);
    builder.into_inner().map_err(error)?.flush().map_err(error)
}
