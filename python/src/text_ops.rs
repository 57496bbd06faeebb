//! The text declarations of `sluice.ops` (Tokenize and the token operators) to and from the
//! core crate's types. Operators that depend on the tokenizer (special tokens by default, a
//! random table sized to the vocabulary) are resolved with the pipeline's Tokenize.

use crate::convert::attr as get;
use crate::errors::bad_setting;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use sluice::ops::{DecodeText, TextOp};
use sluice::text::{EmbeddingTable, MlmSpec, PackSpec, TextTokenizer, Utf8Policy};
use std::path::PathBuf;

/// `sluice.ops.Tokenize` as the core decoder.
pub fn decode_text_from_py(py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<DecodeText> {
    let k = "Tokenize";
    let path: Option<PathBuf> = get(obj, k, "tokenizer")?;
    let tokenizer = match path {
        None => TextTokenizer::gpt2(),
        Some(p) => py
            .detach(|| TextTokenizer::open_or_builtin(&p.to_string_lossy()))
            .map_err(|e| bad_setting("Tokenize.tokenizer", e))?,
    };
    let policy = match get::<String>(obj, k, "invalid_utf8")?.as_str() {
        "error" => Utf8Policy::Error,
        "replace" => Utf8Policy::Replace,
        other => {
            return Err(bad_setting(
                "Tokenize.invalid_utf8",
                format!("{other:?}: give \"error\" or \"replace\""),
            ))
        }
    };
    let offsets: bool = get(obj, k, "offsets")?;
    Ok(DecodeText::new(tokenizer)
        .with_invalid_utf8(policy)
        .with_offsets(offsets))
}

/// A special token setting of operator `k`: "default" (the tokenizer's), None, an id, or a
/// token string.
fn special(
    obj: &Bound<'_, PyAny>,
    k: &str,
    field: &str,
    tokenizer: &TextTokenizer,
    default: Option<u32>,
) -> PyResult<Option<u32>> {
    let value = obj.getattr(field)?;
    let setting = format!("{k}.{field}");
    if value.is_none() {
        return Ok(None);
    }
    if let Ok(id) = value.extract::<u32>() {
        return Ok(Some(id));
    }
    match value.extract::<String>() {
        Ok(s) if s == "default" => default
            .map(Some)
            .ok_or_else(|| bad_setting(&setting, "the tokenizer has no such token: give one")),
        Ok(token) => tokenizer
            .token_to_id(&token)
            .map(Some)
            .ok_or_else(|| bad_setting(&setting, format!("{token:?} is not in the vocabulary"))),
        Err(_) => Err(bad_setting(
            &setting,
            "give \"default\", None, a token id or a token",
        )),
    }
}

/// The text operator declared by `obj` (of kind `k`), or None when `k` is not one.
/// `tokenizer`: the pipeline's Tokenize (None: the pipeline does not start with one).
pub fn text_op_from_py(
    py: Python<'_>,
    obj: &Bound<'_, PyAny>,
    k: &str,
    tokenizer: Option<&TextTokenizer>,
) -> PyResult<Option<TextOp>> {
    if !matches!(
        k,
        "Truncate" | "AddSpecialTokens" | "MlmMask" | "Pack" | "EmbeddingLookup"
    ) {
        return Ok(None);
    }
    let Some(t) = tokenizer else {
        return Err(bad_setting(
            "ops",
            format!("{k} works on token ids: start the pipeline with sluice.ops.Tokenize"),
        ));
    };
    Ok(Some(match k {
        "Truncate" => TextOp::Truncate {
            max_len: crate::convert::count("Truncate.max_len", get(obj, k, "max_len")?, 1)?,
            keep_end: get(obj, k, "keep_end")?,
        },
        "AddSpecialTokens" => TextOp::AddSpecialTokens {
            bos: special(obj, k, "bos", t, t.bos)?,
            eos: special(obj, k, "eos", t, t.eos)?,
        },
        "MlmMask" => {
            let Some(mask_id) = special(obj, k, "mask_token", t, t.mask)? else {
                return Err(bad_setting("MlmMask.mask_token", "give the mask token"));
            };
            let mut spec = MlmSpec::bert(mask_id, t.vocab_size() as u32, t.special_ids());
            spec.probability = get(obj, k, "probability")?;
            spec.mask_fraction = get(obj, k, "mask_fraction")?;
            spec.random_fraction = get(obj, k, "random_fraction")?;
            spec.validate().map_err(|e| bad_setting("MlmMask", e))?;
            TextOp::MlmMask(spec)
        }
        "Pack" => TextOp::Pack(PackSpec {
            seq_len: crate::convert::count("Pack.seq_len", get(obj, k, "seq_len")?, 1)?,
            separator: special(obj, k, "separator", t, t.eos)?,
        }),
        _ => {
            let path: Option<PathBuf> = get(obj, k, "table")?;
            let tensor: Option<String> = get(obj, k, "tensor")?;
            let table = match path {
                Some(p) => py
                    .detach(|| EmbeddingTable::open(&p, tensor.as_deref()))
                    .map_err(|e| bad_setting("EmbeddingLookup.table", e))?,
                None => {
                    let dim = crate::convert::count("EmbeddingLookup.dim", get(obj, k, "dim")?, 1)?;
                    let seed: u64 = get(obj, k, "seed")?;
                    let rows = t.vocab_size();
                    py.detach(|| EmbeddingTable::shared_random(rows, dim, seed))
                }
            };
            TextOp::EmbeddingLookup(table)
        }
    }))
}

/// `DecodeText` as its `sluice.ops.Tokenize` declaration.
pub fn decode_text_to_py<'py>(py: Python<'py>, d: &DecodeText) -> PyResult<Bound<'py, PyAny>> {
    let kw = PyDict::new(py);
    match d.tokenizer.builtin_name() {
        Some(name) => kw.set_item("tokenizer", name)?,
        None => kw.set_item("tokenizer", d.tokenizer.path())?,
    }
    let policy = match d.invalid_utf8 {
        Utf8Policy::Error => "error",
        Utf8Policy::Replace => "replace",
    };
    kw.set_item("invalid_utf8", policy)?;
    kw.set_item("offsets", d.offsets)?;
    py.import("sluice.ops")?
        .getattr("Tokenize")?
        .call((), Some(&kw))
}

/// A text operator as its `sluice.ops` declaration (`kw` already holds `on`/`fixed`).
pub fn text_op_to_py<'py>(
    py: Python<'py>,
    op: &TextOp,
    kw: Bound<'py, PyDict>,
) -> PyResult<Bound<'py, PyAny>> {
    let class = py.import("sluice.ops")?.getattr(op.kind().name())?;
    match op {
        TextOp::Truncate { max_len, keep_end } => {
            kw.set_item("max_len", max_len)?;
            kw.set_item("keep_end", keep_end)?;
        }
        TextOp::AddSpecialTokens { bos, eos } => {
            kw.set_item("bos", bos)?;
            kw.set_item("eos", eos)?;
        }
        TextOp::MlmMask(spec) => {
            kw.set_item("probability", spec.probability)?;
            kw.set_item("mask_fraction", spec.mask_fraction)?;
            kw.set_item("random_fraction", spec.random_fraction)?;
            kw.set_item("mask_token", spec.mask_id)?;
        }
        TextOp::Pack(spec) => {
            kw.set_item("seq_len", spec.seq_len)?;
            kw.set_item("separator", spec.separator)?;
        }
        TextOp::EmbeddingLookup(table) => match table.random_seed() {
            Some(seed) => {
                kw.set_item("dim", table.dim)?;
                kw.set_item("seed", seed)?;
            }
            None => kw.set_item("table", table.origin())?,
        },
    }
    class.call((), Some(&kw))
}
