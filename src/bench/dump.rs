//! `sluice bench --dump DIR`: the first batch as `.npy` files (one per named tensor) and
//! `samples.txt` (each sample's origin, one per line, in batch order; `text.json` for
//! transcripts), so anyone can inspect the output or compare it with another library's.
//!
//! NPY is numpy's documented container (a magic string, a version, a header dictionary padded to
//! 64 bytes, then the raw little-endian values); written here in a few lines rather than through
//! a crate.

use crate::batch::{Batch, Images};
use crate::error::{Error, Result};
use crate::pipeline::OutputSpec;
use crate::source::Source;
use crate::tensor::DType;
use std::path::Path;

/// numpy's type string; bf16 has none, so its bits go out as unsigned 16-bit integers.
fn descr(dtype: DType) -> &'static str {
    match dtype {
        DType::U8 => "|u1",
        DType::F16 => "<f2",
        DType::Bf16 => "<u2",
        DType::F32 => "<f4",
        DType::I32 => "<i4",
    }
}

/// An NPY (version 1.0) file of `shape` holding `data` (already little-endian `descr` values).
pub fn npy_bytes(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims = match shape {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {dims}, }}");
    // Magic (6) + version (2) + length (2) + header + '\n' is a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, bytes).map_err(|e| Error::io(path.display().to_string(), e))
}

fn i64_npy(values: impl Iterator<Item = i64>) -> (Vec<u8>, usize) {
    let mut data = Vec::new();
    let mut n = 0;
    for v in values {
        data.extend_from_slice(&v.to_le_bytes());
        n += 1;
    }
    (data, n)
}

/// Write `batch` (of a pipeline with `output`) into `dir`: `images.npy` (`features.npy` for
/// padded speech batches, `input_ids.npy` or `embeddings.npy` and `attention_mask.npy` for text
/// batches; one `images_K.npy` per sample for ragged batches), `lengths.npy` when padded,
/// `labels.npy` (each sample's class, or token labels `[n, width]`), `cu_seqlens.npy` when
/// packed, `samples.txt`, and `text.json` (a list of strings) when the source has
/// transcripts. Returns the files written.
pub fn dump_batch(
    dir: &Path,
    batch: &Batch,
    source: &dyn Source,
    output: &OutputSpec,
) -> Result<Vec<String>> {
    if let Some(host) = batch.copied_to_host()? {
        return dump_batch(dir, &host, source, output);
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir.display().to_string(), e))?;
    let mut written = Vec::new();
    let padded = !batch.lengths.is_empty();
    match &batch.images {
        Images::Dense(d) => {
            let name = match (padded, output.pad_leading, d.dtype) {
                (false, ..) => "images.npy",
                (true, false, _) => "features.npy",
                (true, true, DType::I32) => "input_ids.npy",
                (true, true, _) => "embeddings.npy",
            };
            write(dir, name, &npy_bytes(descr(d.dtype), &d.shape, d.bytes()))?;
            written.push(name.to_string());
            if let (true, Some(width)) = (output.pad_leading, output.padded_width(&d.shape)) {
                let mask = batch.attention_mask(width);
                let shape = [batch.lengths.len(), width];
                write(dir, "attention_mask.npy", &npy_bytes("|u1", &shape, &mask))?;
                written.push("attention_mask.npy".into());
            }
        }
        Images::Ragged(r) => {
            for (k, shape) in r.shapes.iter().enumerate() {
                let name = format!("images_{k}.npy");
                let bytes = &r.bytes()[r.offsets[k]..r.offsets[k + 1]];
                write(dir, &name, &npy_bytes(descr(r.dtype), shape, bytes))?;
                written.push(name);
            }
        }
        Images::Device(_) => unreachable!("copied to the host above"),
    }
    if !batch.cu_seqlens.is_empty() {
        let bytes = batch.cu_seqlens_bytes();
        let shape = [batch.cu_seqlens.len()];
        write(dir, "cu_seqlens.npy", &npy_bytes("<i4", &shape, &bytes))?;
        written.push("cu_seqlens.npy".into());
    }
    if padded {
        let (data, n) = i64_npy(batch.lengths.iter().map(|&l| l as i64));
        write(dir, "lengths.npy", &npy_bytes("<i8", &[n], &data))?;
        written.push("lengths.npy".into());
    }
    // Masked-LM batches: the token labels (i32, like the ids); else each sample's class.
    match &batch.token_labels {
        Some(t) => write(dir, "labels.npy", &npy_bytes("<i4", &t.shape, t.bytes()))?,
        None => {
            let (data, n) = i64_npy(batch.labels.iter().copied());
            write(dir, "labels.npy", &npy_bytes("<i8", &[n], &data))?;
        }
    }
    written.push("labels.npy".into());
    let origins: String = batch
        .sample_indices
        .iter()
        .map(|&i| source.origin(i) + "\n")
        .collect();
    write(dir, "samples.txt", origins.as_bytes())?;
    written.push("samples.txt".into());
    if !batch.texts.is_empty() {
        // JSON keeps transcripts exact (commas, quotes, newlines).
        let json = serde_json::to_string_pretty(&batch.texts).expect("strings serialize");
        write(dir, "text.json", json.as_bytes())?;
        written.push("text.json".into());
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::npy_bytes;

    #[test]
    fn npy_headers_follow_the_format() {
        let data: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let npy = npy_bytes("<f4", &[2, 3], &data);
        assert_eq!(&npy[..8], b"\x93NUMPY\x01\x00");
        let header_len = u16::from_le_bytes([npy[8], npy[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0, "the data starts 64-byte aligned");
        let header = std::str::from_utf8(&npy[10..10 + header_len]).unwrap();
        assert!(header.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"));
        assert!(header.ends_with('\n'));
        assert_eq!(&npy[10 + header_len..], &data[..]);
        // One dimension keeps numpy's trailing comma.
        let one = npy_bytes("<i8", &[4], &[0; 32]);
        assert!(std::str::from_utf8(&one[10..])
            .unwrap()
            .contains("'shape': (4,)"));
    }
}
