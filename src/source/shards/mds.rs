//! MosaicML Streaming (MDS) datasets, read-only: `index.json` names the shards and their
//! columns; each shard is `u32 n`, `n + 1` u32 sample offsets, then the samples, each a u32
//! size per variable-size column followed by the columns' bytes. Indexed into the same manifest
//! as WebDataset shards (one column is the sample's data, one its label), so everything after
//! opening (order, ranks, read-ahead, resume) is shared.

use super::manifest::{Manifest, SampleEntry, ShardIndex, FORMAT};
use super::store::{IoConfig, Object};
use super::writer::data_extension;
use crate::error::{Error, Result};
use serde::Deserialize;
use std::sync::Arc;

/// The file that describes an MDS dataset.
pub const INDEX_NAME: &str = "index.json";

#[derive(Debug, Deserialize)]
struct Index {
    shards: Vec<Shard>,
}

#[derive(Debug, Deserialize)]
struct Shard {
    format: String,
    column_encodings: Vec<String>,
    column_names: Vec<String>,
    column_sizes: Vec<Option<u64>>,
    #[serde(default)]
    compression: Option<String>,
    raw_data: FileInfo,
    samples: u64,
}

#[derive(Debug, Deserialize)]
struct FileInfo {
    basename: String,
}

/// Columns whose name marks them as the data, and encodings that are data by themselves.
const DATA_NAMES: [&str; 10] = [
    "image", "img", "jpg", "jpeg", "png", "audio", "wav", "flac", "text", "txt",
];
const LABEL_NAMES: [&str; 5] = ["label", "cls", "class", "target", "y"];
const TRANSCRIPT_NAMES: [&str; 3] = ["text", "transcript", "sentence"];

/// Whether `json` is an MDS `index.json` (rather than a sluice manifest).
pub fn is_mds_index(json: &serde_json::Value) -> bool {
    json.get("shards").is_some_and(|s| s.is_array()) && json.get("format").is_none()
}

/// Index the MDS dataset whose `index.json` is at `location` (`index` its parsed contents):
/// every shard is read once (whole), checked, and its samples' data columns located.
pub fn manifest(
    location: &str,
    index: serde_json::Value,
    config: &Arc<IoConfig>,
) -> Result<Manifest> {
    use rayon::prelude::*;
    let error = |what: String| Error::Source(format!("{location}: {what}"));
    let index: Index =
        serde_json::from_value(index).map_err(|e| error(format!("not an MDS index: {e}")))?;
    let dir = location.rfind('/').map_or("", |i| &location[..=i]);
    let shards = index
        .shards
        .par_iter()
        .map(|shard| {
            let url = format!("{dir}{}", shard.raw_data.basename);
            index_shard(&url, shard, config)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Manifest {
        format: FORMAT.to_string(),
        shards,
    })
}

/// Fixed byte sizes of MDS's scalar encodings.
fn fixed_size(encoding: &str) -> Option<u64> {
    Some(match encoding {
        "int8" | "uint8" => 1,
        "int16" | "uint16" | "float16" => 2,
        "int32" | "uint32" | "float32" => 4,
        "int" | "int64" | "uint64" | "float64" => 8,
        _ => return None,
    })
}

fn index_shard(url: &str, shard: &Shard, config: &Arc<IoConfig>) -> Result<ShardIndex> {
    let error = |what: String| Error::Source(format!("{url}: {what}"));
    if shard.format != "mds" {
        return Err(error(format!("format `{}`, not mds", shard.format)));
    }
    if let Some(c) = &shard.compression {
        return Err(error(format!(
            "compressed ({c}) MDS shards are not read; write the dataset without compression"
        )));
    }
    let (names, encodings) = (&shard.column_names, &shard.column_encodings);
    if names.len() != encodings.len() || names.len() != shard.column_sizes.len() {
        return Err(error(
            "column names, encodings and sizes differ in number".into(),
        ));
    }
    let column = |wanted: &dyn Fn(&str, &str) -> bool| {
        (0..names.len()).find(|&c| wanted(&names[c].to_ascii_lowercase(), &encodings[c]))
    };
    let data = column(&|_, e| e == "jpeg" || e == "png")
        .or_else(|| column(&|n, e| DATA_NAMES.contains(&n) && (e == "bytes" || e == "str")))
        .ok_or_else(|| {
            error(format!(
                "no data column: columns {names:?} with encodings {encodings:?} (expected a \
                 jpeg/png column, or bytes/str named one of {DATA_NAMES:?})"
            ))
        })?;
    let label = column(&|n, e| {
        LABEL_NAMES.contains(&n)
            && (fixed_size(e).is_some() && !e.starts_with("float") || e == "str")
    });
    let transcript =
        column(&|n, e| TRANSCRIPT_NAMES.contains(&n) && e == "str").filter(|&c| c != data);
    let object = Object::open(url, config)?;
    let info = object.info()?;
    let bytes = object.read_all()?;
    let u32_at = |at: u64| -> Option<u64> {
        let b = bytes.get(at as usize..at as usize + 4)?;
        Some(u64::from(u32::from_le_bytes(b.try_into().unwrap())))
    };
    let n = u32_at(0).ok_or_else(|| error("shorter than its header".into()))?;
    if n != shard.samples {
        return Err(error(format!(
            "holds {n} samples, index.json says {}",
            shard.samples
        )));
    }
    let mut samples = Vec::with_capacity(n as usize);
    for i in 0..n {
        let bad = |what: &str| error(format!("sample {i}: {what}"));
        let (begin, end) = match (u32_at(4 + 4 * i), u32_at(8 + 4 * i)) {
            (Some(b), Some(e)) if b <= e && e <= bytes.len() as u64 => (b, e),
            _ => {
                return Err(bad(
                    "its offsets lie outside the shard (truncated or corrupt)",
                ))
            }
        };
        // Column sizes: fixed, or a u32 prefix per variable column, in column order.
        let mut at = begin;
        let mut sizes = Vec::with_capacity(names.len());
        for (c, size) in shard.column_sizes.iter().enumerate() {
            let size = match size.or_else(|| fixed_size(&encodings[c])) {
                Some(s) => s,
                None => {
                    let s = u32_at(at)
                        .filter(|_| at + 4 <= end)
                        .ok_or_else(|| bad("cut short"))?;
                    at += 4;
                    s
                }
            };
            sizes.push(size);
        }
        let mut offsets = Vec::with_capacity(names.len());
        for s in &sizes {
            offsets.push(at);
            at += s;
        }
        if at > end {
            return Err(bad(&format!(
                "its columns need {} bytes, it has {}",
                at - begin,
                end - begin
            )));
        }
        let value = |c: usize| &bytes[offsets[c] as usize..(offsets[c] + sizes[c]) as usize];
        if sizes[data] == 0 {
            return Err(bad(&format!("column `{}` is empty", names[data])));
        }
        let label =
            match label {
                Some(c) => Some(integer(value(c), &encodings[c]).ok_or_else(|| {
                    bad(&format!("label column `{}` is not an integer", names[c]))
                })?),
                None => None,
            };
        let ext = match encodings[data].as_str() {
            "jpeg" => "jpg",
            "png" => "png",
            "str" => "txt",
            _ => data_extension(value(data)),
        };
        let is_audio = ext == "wav" || ext == "flac";
        let text = transcript
            .filter(|_| is_audio)
            .map(|c| String::from_utf8_lossy(value(c)).into_owned());
        samples.push(SampleEntry {
            key: format!("{i}"),
            ext: ext.to_string(),
            offset: offsets[data],
            length: sizes[data],
            label,
            text,
        });
    }
    Ok(ShardIndex {
        url: url.to_string(),
        size: info.size,
        etag: info.etag,
        samples,
    })
}

/// An MDS scalar (little-endian) or a decimal string as an integer.
fn integer(bytes: &[u8], encoding: &str) -> Option<i64> {
    let le = |n: usize| {
        let mut b = [0u8; 8];
        b[..n].copy_from_slice(bytes.get(..n)?);
        Some(b)
    };
    Some(match encoding {
        "int8" => i64::from(bytes.first().copied()? as i8),
        "uint8" => i64::from(*bytes.first()?),
        "int16" => i64::from(i16::from_le_bytes(bytes.get(..2)?.try_into().ok()?)),
        "uint16" => i64::from(u16::from_le_bytes(bytes.get(..2)?.try_into().ok()?)),
        "int32" => i64::from(i32::from_le_bytes(bytes.get(..4)?.try_into().ok()?)),
        "uint32" => i64::from(u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?)),
        "int" | "int64" => i64::from_le_bytes(le(8)?),
        "uint64" => i64::try_from(u64::from_le_bytes(le(8)?)).ok()?,
        "str" => std::str::from_utf8(bytes).ok()?.trim().parse().ok()?,
        _ => return None,
    })
}
