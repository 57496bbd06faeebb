//! A frozen embedding table (cedar's `EmbeddingLookup`): `[rows, dim]` f32, loaded from a
//! `.npy` (f32 or f16) or a safetensors file (f32, f16 or bf16; widened to f32, exactly), or
//! a deterministic random table for benchmarks.

use super::{Embedded, Tokens};
use half::{bf16, f16};
use std::path::Path;
use std::sync::Arc;

#[derive(Clone)]
pub struct EmbeddingTable {
    pub rows: usize,
    pub dim: usize,
    data: Arc<[f32]>,
    origin: String,
    /// The seed of a random table (None: loaded or given).
    seed: Option<u64>,
}

impl std::fmt::Debug for EmbeddingTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "EmbeddingTable({} [{}, {}])",
            self.origin, self.rows, self.dim
        )
    }
}

impl PartialEq for EmbeddingTable {
    fn eq(&self, other: &Self) -> bool {
        (self.rows, self.dim, &self.origin) == (other.rows, other.dim, &other.origin)
            && (Arc::ptr_eq(&self.data, &other.data) || self.data == other.data)
    }
}

impl EmbeddingTable {
    pub fn new(rows: usize, dim: usize, data: Vec<f32>, origin: &str) -> Result<Self, String> {
        if rows == 0 || dim == 0 || data.len() != rows * dim {
            return Err(format!(
                "{origin}: an embedding table [{rows}, {dim}] needs {} values, has {}",
                rows * dim,
                data.len()
            ));
        }
        Ok(EmbeddingTable {
            rows,
            dim,
            data: data.into(),
            origin: origin.to_string(),
            seed: None,
        })
    }

    /// [`EmbeddingTable::random`], made once per (rows, dim, seed) in a process and shared
    /// (GPT-2's vocabulary × 768 is 154 MB).
    pub fn shared_random(rows: usize, dim: usize, seed: u64) -> Self {
        static MADE: std::sync::Mutex<Vec<EmbeddingTable>> = std::sync::Mutex::new(Vec::new());
        let mut made = MADE.lock().unwrap();
        if let Some(t) = made
            .iter()
            .find(|t| (t.rows, t.dim, t.seed) == (rows, dim, Some(seed)))
        {
            return t.clone();
        }
        let table = Self::random(rows, dim, seed);
        made.push(table.clone());
        table
    }

    /// The seed of a random table; None for one loaded from a file.
    pub fn random_seed(&self) -> Option<u64> {
        self.seed
    }

    /// Deterministic values uniform in [-0.05, 0.05), a pure function of (seed, row, column)
    /// through the counter RNG: the benchmark's table when no file is given.
    pub fn random(rows: usize, dim: usize, seed: u64) -> Self {
        let mut data = vec![0f32; rows * dim];
        let key = [seed as u32, (seed >> 32) as u32];
        data.chunks_mut(4).enumerate().for_each(|(block, out)| {
            let words =
                crate::rng::philox4x32([block as u32, (block >> 32) as u32, 0x656d62, 0], key);
            for (o, w) in out.iter_mut().zip(words) {
                *o = ((w >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 0.1;
            }
        });
        let mut table = Self::new(rows, dim, data, &format!("random (seed {seed})")).unwrap();
        table.seed = Some(seed);
        table
    }

    /// A table from `path`: `.npy` (2-D, little-endian f32 or f16, C order) or `.safetensors`
    /// (its only 2-D tensor, or the one named `tensor`).
    pub fn open(path: &Path, tensor: Option<&str>) -> Result<Self, String> {
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let origin = path.display().to_string();
        let is_npy = bytes.starts_with(b"\x93NUMPY");
        let (rows, dim, data) = if is_npy {
            read_npy(&bytes)
        } else {
            read_safetensors(&bytes, tensor)
        }
        .map_err(|e| format!("{origin}: {e}"))?;
        Self::new(rows, dim, data, &origin)
    }

    /// The values, `[rows, dim]` row-major, shared (a GPU keeps one upload per table).
    pub fn shared_data(&self) -> &Arc<[f32]> {
        &self.data
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Row `id`.
    pub fn row(&self, id: u32) -> &[f32] {
        let at = id as usize * self.dim;
        &self.data[at..at + self.dim]
    }

    /// Whether every id of `tokens` has a row; the error names the first that has none.
    pub fn check(&self, tokens: &Tokens) -> Result<(), String> {
        match tokens.ids.iter().find(|&&id| id as usize >= self.rows) {
            Some(bad) => Err(format!(
                "token id {bad} is outside the embedding table's {} rows",
                self.rows
            )),
            None => Ok(()),
        }
    }

    /// Write the rows of `ids` (little-endian i32 token ids as a batch carries them, already
    /// checked) back to back into `out` as little-endian f32, then `pad` into the rest of `out`.
    pub fn gather_into(&self, ids: &[u8], pad: f32, out: &mut [u8]) {
        let (rows, padding) = out.split_at_mut((ids.len() / 4 * self.dim * 4).min(out.len()));
        for (id, dst) in ids.chunks_exact(4).zip(rows.chunks_exact_mut(self.dim * 4)) {
            let id = i32::from_le_bytes(id.try_into().unwrap()) as u32;
            for (d, v) in dst.chunks_exact_mut(4).zip(self.row(id)) {
                d.copy_from_slice(&v.to_le_bytes());
            }
        }
        let pad = pad.to_le_bytes();
        padding
            .chunks_exact_mut(4)
            .for_each(|d| d.copy_from_slice(&pad));
    }

    /// The rows of `tokens`, in order; an id outside the table is an error naming it.
    pub fn lookup(&self, tokens: &Tokens, out: &mut Embedded) -> Result<(), String> {
        self.check(tokens)?;
        out.tokens = tokens.ids.len();
        out.dim = self.dim;
        out.data.clear();
        out.data.reserve(tokens.ids.len() * self.dim);
        for &id in &tokens.ids {
            out.data.extend_from_slice(self.row(id));
        }
        Ok(())
    }
}

/// `[rows, dim]` and the values of a 2-D little-endian f32/f16 NPY file in C order.
fn read_npy(bytes: &[u8]) -> Result<(usize, usize, Vec<f32>), String> {
    let (header_len, start) = match bytes.get(6) {
        Some(1) if bytes.len() >= 10 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        Some(2 | 3) if bytes.len() >= 12 => (
            u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
            12,
        ),
        _ => return Err("not an NPY file of version 1, 2 or 3".into()),
    };
    let header = bytes
        .get(start..start + header_len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or("truncated NPY header")?;
    let field = |name: &str| {
        let at = header
            .find(&format!("'{name}'"))
            .ok_or(format!("NPY header lacks {name}"))?;
        Ok::<_, String>(header[at + name.len() + 2..].trim_start_matches([':', ' ']))
    };
    if field("fortran_order")?.starts_with("True") {
        return Err("Fortran-order arrays are not supported; save with C order".into());
    }
    let descr = field("descr")?;
    let width = match descr.get(..5) {
        Some("'<f4'") => 4,
        Some("'<f2'") => 2,
        _ => {
            return Err(format!(
                "element type {} is not <f4 or <f2",
                &descr[..descr.len().min(8)]
            ))
        }
    };
    let shape = field("shape")?;
    let dims: Vec<usize> = shape[1..shape.find(')').ok_or("bad NPY shape")?]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| format!("bad NPY dimension {s:?}")))
        .collect::<Result<_, _>>()?;
    let [rows, dim] = dims[..] else {
        return Err(format!("the array has shape {dims:?}, not [rows, dim]"));
    };
    let body = &bytes[start + header_len..];
    if body.len() != rows * dim * width {
        return Err(format!(
            "the array [{rows}, {dim}] needs {} bytes, the file has {}",
            rows * dim * width,
            body.len()
        ));
    }
    Ok((rows, dim, widen(body, width, false)))
}

/// f32 values of little-endian f32 (width 4), f16 or bf16 (width 2) elements.
fn widen(body: &[u8], width: usize, brain: bool) -> Vec<f32> {
    body.chunks_exact(width)
        .map(|b| match (width, brain) {
            (4, _) => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            (_, false) => f16::from_le_bytes([b[0], b[1]]).to_f32(),
            (_, true) => bf16::from_le_bytes([b[0], b[1]]).to_f32(),
        })
        .collect()
}

fn read_safetensors(bytes: &[u8], name: Option<&str>) -> Result<(usize, usize, Vec<f32>), String> {
    use safetensors::{Dtype, SafeTensors};
    let file =
        SafeTensors::deserialize(bytes).map_err(|e| format!("not a safetensors file: {e}"))?;
    let mut tensors = file.tensors();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let (key, view) = match name {
        Some(n) => tensors
            .into_iter()
            .find(|(k, _)| k == n)
            .ok_or(format!("no tensor named {n:?}"))?,
        None => {
            let mut two_d: Vec<_> = tensors
                .into_iter()
                .filter(|(_, v)| v.shape().len() == 2)
                .collect();
            if two_d.len() != 1 {
                let names: Vec<_> = two_d.iter().map(|(k, _)| k.as_str()).collect();
                return Err(format!(
                    "name the embedding tensor: the file has {} 2-D tensors {names:?}",
                    names.len()
                ));
            }
            two_d.remove(0)
        }
    };
    let [rows, dim] = view.shape()[..] else {
        return Err(format!(
            "tensor {key} has shape {:?}, not [rows, dim]",
            view.shape()
        ));
    };
    let data = match view.dtype() {
        Dtype::F32 => widen(view.data(), 4, false),
        Dtype::F16 => widen(view.data(), 2, false),
        Dtype::BF16 => widen(view.data(), 2, true),
        other => return Err(format!("tensor {key} is {other:?}, not F32, F16 or BF16")),
    };
    Ok((rows, dim, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_round_trip_and_lookup() {
        let values: Vec<f32> = (0..12).map(|i| i as f32 * 0.5).collect();
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let file = crate::bench::npy_bytes("<f4", &[4, 3], &bytes);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.npy");
        std::fs::write(&path, file).unwrap();
        let table = EmbeddingTable::open(&path, None).unwrap();
        assert_eq!((table.rows, table.dim), (4, 3));
        let mut out = Embedded::default();
        table.lookup(&Tokens::new(vec![2, 0]), &mut out).unwrap();
        assert_eq!(out.data, [3.0, 3.5, 4.0, 0.0, 0.5, 1.0]);
        let err = table.lookup(&Tokens::new(vec![4]), &mut out).unwrap_err();
        assert!(err.contains("token id 4"), "{err}");
    }

    #[test]
    fn random_table_is_deterministic_and_bounded() {
        let a = EmbeddingTable::random(10, 7, 3);
        assert_eq!(a, EmbeddingTable::random(10, 7, 3));
        assert_ne!(a.row(1), EmbeddingTable::random(10, 7, 4).row(1));
        assert!(a.data.iter().all(|v| (-0.05..0.05).contains(v)));
    }
}
