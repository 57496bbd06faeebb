//! Index a WebDataset tar shard: its members (name, data offset, size) read with the `tar`
//! crate, checked against the shard's size, then grouped into samples by key (the member path
//! up to the first dot of its last component). Anything doubtful is an error naming the shard
//! and the member: this runs on untrusted data.

use super::manifest::SampleEntry;
use crate::error::{Error, Result};
use std::io::{Read, Seek};

/// One regular file in a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    /// Offset of the member's data in the shard.
    pub offset: u64,
    pub size: u64,
}

/// Extensions of a sample's data member, in order of preference: images, audio, text.
pub const DATA_EXTENSIONS: [&str; 7] = ["jpg", "jpeg", "png", "wav", "flac", "txt", "text"];
/// Extensions of a class label (an ASCII integer).
const LABEL_EXTENSIONS: [&str; 4] = ["cls", "cls2", "label", "class"];
/// Extensions of an audio sample's transcript.
const TRANSCRIPT_EXTENSIONS: [&str; 3] = ["txt", "text", "transcript"];
/// Label and transcript members larger than this are refused (they are read into the index).
const MAX_METADATA_BYTES: u64 = 1 << 20;

/// The members of the tar read by `reader` (`len` bytes in all, named `shard` in errors).
pub fn members(reader: impl Read + Seek, len: u64, shard: &str) -> Result<Vec<Member>> {
    let error = |what: String| Error::Source(format!("{shard}: {what}"));
    let mut archive = tar::Archive::new(reader);
    let entries = archive
        .entries_with_seek()
        .map_err(|e| error(format!("not a tar file: {e}")))?;
    let mut members = Vec::new();
    let mut end = 0u64;
    for entry in entries {
        let entry = entry.map_err(|e| error(format!("bad tar header after byte {end}: {e}")))?;
        let header = entry.header();
        let at = entry.raw_header_position();
        if header.as_ustar().is_none() && header.as_gnu().is_none() {
            return Err(error(format!(
                "the header at byte {at} is neither ustar/PAX nor GNU (old v7 tar is not read)"
            )));
        }
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let (offset, size) = (entry.raw_file_position(), entry.size());
        let fits = offset.checked_add(size).is_some_and(|e| e <= len);
        if !fits {
            return Err(error(format!(
                "member `{name}` at byte {at} claims {size} bytes but the shard has {len}: \
                 truncated or corrupt"
            )));
        }
        end = offset + size.div_ceil(512) * 512;
        use tar::EntryType as T;
        match header.entry_type() {
            T::Regular | T::Continuous => {}
            T::Directory | T::XGlobalHeader => continue,
            other => {
                return Err(error(format!(
                    "member `{name}` at byte {at} is a {other:?} entry: shards hold regular \
                     files only"
                )))
            }
        }
        if name.starts_with('/') || name.split('/').any(|c| c == "..") {
            return Err(error(format!(
                "member `{name}` at byte {at} has an absolute or `..` path"
            )));
        }
        if size == 0 {
            return Err(error(format!("member `{name}` at byte {at} is empty")));
        }
        members.push(Member { name, offset, size });
    }
    // A writer ends a tar with zero blocks; without one the shard was cut short (possibly on
    // a member boundary, which the headers alone cannot show).
    if len < end + 512 {
        return Err(error(format!(
            "no end-of-archive block after byte {end} (of {len}): the shard is truncated"
        )));
    }
    Ok(members)
}

/// Split a member name into (key, extension): `dir/n0001.seg.png` → (`dir/n0001`, `seg.png`).
pub fn key_and_extension(name: &str) -> (&str, &str) {
    let base = name.rfind('/').map_or(0, |i| i + 1);
    match name[base..].find('.') {
        Some(dot) => (&name[..base + dot], &name[base + dot + 1..]),
        None => (name, ""),
    }
}

/// Group `members` into samples (consecutive members with one key), reading labels and
/// transcripts with `read` (offset, size) → bytes.
pub fn samples(
    members: &[Member],
    shard: &str,
    mut read: impl FnMut(u64, u64) -> Result<Vec<u8>>,
) -> Result<Vec<SampleEntry>> {
    let error = |what: String| Error::Source(format!("{shard}: {what}"));
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut i = 0;
    while i < members.len() {
        let (key, _) = key_and_extension(&members[i].name);
        let mut j = i;
        while j < members.len() && key_and_extension(&members[j].name).0 == key {
            j += 1;
        }
        let group = &members[i..j];
        if !seen.insert(key.to_string()) {
            return Err(error(format!(
                "key `{key}` appears again at byte {}: a sample's members must be adjacent",
                group[0].offset
            )));
        }
        let ext_of = |m: &Member| key_and_extension(&m.name).1.to_ascii_lowercase();
        let find = |exts: &[&str]| {
            exts.iter()
                .find_map(|e| group.iter().find(|m| ext_of(m) == *e))
        };
        let data = find(&DATA_EXTENSIONS).ok_or_else(|| {
            let have: Vec<String> = group.iter().map(|m| format!(".{}", ext_of(m))).collect();
            error(format!(
                "sample `{key}` has no data member (it has {}; expected one of .{})",
                have.join(", "),
                DATA_EXTENSIONS.join(", .")
            ))
        })?;
        let mut metadata = |m: &Member, what: &str| -> Result<String> {
            if m.size > MAX_METADATA_BYTES {
                return Err(error(format!(
                    "{what} `{}` is {} bytes (limit {MAX_METADATA_BYTES})",
                    m.name, m.size
                )));
            }
            let bytes = read(m.offset, m.size)?;
            String::from_utf8(bytes).map_err(|_| error(format!("{what} `{}` is not UTF-8", m.name)))
        };
        let label = match find(&LABEL_EXTENSIONS) {
            Some(m) => {
                let text = metadata(m, "label")?;
                let label = text.trim().parse::<i64>().map_err(|_| {
                    error(format!(
                        "label `{}` is `{}`, not an integer",
                        m.name,
                        text.trim()
                    ))
                })?;
                Some(label)
            }
            None => None,
        };
        let data_ext = ext_of(data);
        let is_audio = data_ext == "wav" || data_ext == "flac";
        let text = match find(&TRANSCRIPT_EXTENSIONS).filter(|_| is_audio) {
            Some(m) => Some(metadata(m, "transcript")?),
            None => None,
        };
        out.push(SampleEntry {
            key: key.to_string(),
            ext: data_ext,
            offset: data.offset,
            length: data.size,
            label,
            text,
        });
        i = j;
    }
    Ok(out)
}
