//! Conversions between the Python declarations (`sluice.ops` dataclasses, setting names) and
//! the core crate's values. Validation of the values themselves stays in the core crate.

use crate::errors::bad_setting;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use sluice::ops::{
    Cast, CenterCrop, ColorJitter, GaussianBlur, Normalize, Op, RandomGrayscale,
    RandomHorizontalFlip, RandomResizedCrop, Resize,
};
use sluice::{DType, ErrorPolicy, Layout, Placement};

/// An operator as declared: the operator, where it is pinned, and whether it may move.
pub struct Declared {
    pub op: Op,
    pub pin: Option<Placement>,
    pub fixed: bool,
}

const DTYPES: &str = "float32, float16, bfloat16, uint8";

pub fn dtype(setting: &str, name: &str) -> PyResult<DType> {
    match name {
        "float32" | "f32" => Ok(DType::F32),
        "float16" | "f16" | "half" => Ok(DType::F16),
        "bfloat16" | "bf16" => Ok(DType::Bf16),
        "uint8" | "u8" => Ok(DType::U8),
        _ => Err(bad_setting(
            setting,
            format!("{name:?} is not one of {DTYPES}"),
        )),
    }
}

/// The Python name of a dtype (as NumPy and PyTorch spell it).
pub fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "float32",
        DType::F16 => "float16",
        DType::Bf16 => "bfloat16",
        DType::U8 => "uint8",
        DType::I32 => "int32",
    }
}

pub fn layout(setting: &str, name: &str) -> PyResult<Layout> {
    match name.to_ascii_lowercase().as_str() {
        "chw" => Ok(Layout::Chw),
        "hwc" => Ok(Layout::Hwc),
        _ => Err(bad_setting(
            setting,
            format!("{name:?} is not one of chw, hwc"),
        )),
    }
}

fn layout_name(layout: Layout) -> &'static str {
    match layout {
        Layout::Chw => "chw",
        Layout::Hwc => "hwc",
    }
}

pub fn placement(setting: &str, name: &str) -> PyResult<Placement> {
    Placement::from_name(name).ok_or_else(|| {
        bad_setting(
            setting,
            format!("{name:?} is not one of cpu, wgpu, cuda, auto"),
        )
    })
}

pub fn placement_name(p: Placement) -> &'static str {
    match p {
        Placement::Cpu => "cpu",
        Placement::Wgpu => "wgpu",
        Placement::Cuda => "cuda",
        Placement::Auto => "auto",
    }
}

pub fn policy(name: &str) -> PyResult<ErrorPolicy> {
    match name {
        "fail" => Ok(ErrorPolicy::Fail),
        "skip" => Ok(ErrorPolicy::Skip),
        _ => Err(bad_setting(
            "on_error",
            format!("{name:?} is not one of fail, skip"),
        )),
    }
}

/// A count setting that must be at least `min` (Python ints may be negative or huge).
pub fn count(setting: &str, value: i64, min: i64) -> PyResult<usize> {
    if value < min {
        return Err(bad_setting(
            setting,
            format!("must be at least {min}, got {value}"),
        ));
    }
    usize::try_from(value).map_err(|_| bad_setting(setting, format!("{value} is too large")))
}

/// A size given as `n` or `(height, width)`.
fn size(op: &str, value: &Bound<'_, PyAny>) -> PyResult<(u32, u32)> {
    let setting = format!("{op}.size");
    let side = |v: i64| -> PyResult<u32> {
        u32::try_from(v)
            .ok()
            .filter(|&s| s > 0)
            .ok_or_else(|| bad_setting(&setting, format!("{v} is not a positive size")))
    };
    if let Ok(n) = value.extract::<i64>() {
        let n = side(n)?;
        return Ok((n, n));
    }
    let (h, w): (i64, i64) = value.extract().map_err(|_| {
        bad_setting(
            &setting,
            "give an int or a (height, width) pair of ints".to_string(),
        )
    })?;
    Ok((side(h)?, side(w)?))
}

/// A (low, high) pair, or one number `x` meaning (x, x).
fn pair(op: &str, field: &str, value: &Bound<'_, PyAny>) -> PyResult<(f64, f64)> {
    if let Ok(x) = value.extract::<f64>() {
        return Ok((x, x));
    }
    value.extract::<(f64, f64)>().map_err(|_| {
        bad_setting(
            &format!("{op}.{field}"),
            "give a (low, high) pair of numbers",
        )
    })
}

pub fn attr<'py, T: FromPyObjectOwned<'py>>(
    obj: &Bound<'py, PyAny>,
    op: &str,
    field: &str,
) -> PyResult<T> {
    obj.getattr(field)?
        .extract::<T>()
        .map_err(|e| bad_setting(&format!("{op}.{field}"), Into::<PyErr>::into(e)))
}

/// A `sluice.ops` declaration as a core operator.
/// `tokenizer`: the pipeline's Tokenize, which text operators resolve their defaults with.
pub fn op_from_py(
    obj: &Bound<'_, PyAny>,
    tokenizer: Option<&sluice::text::TextTokenizer>,
) -> PyResult<Declared> {
    let kind: String = obj
        .getattr("_kind")
        .and_then(|k| k.extract())
        .map_err(|_| {
            bad_setting(
                "ops",
                format!(
                    "{} is not a sluice operator (use the classes in sluice.ops)",
                    obj.repr().map_or("?".into(), |r| r.to_string())
                ),
            )
        })?;
    let k = kind.as_str();
    let f32_attr = |field: &str| attr::<f32>(obj, k, field);
    let op = match k {
        "RandomResizedCrop" => {
            let (height, width) = size(k, &obj.getattr("size")?)?;
            Op::RandomResizedCrop(RandomResizedCrop {
                height,
                width,
                scale: pair(k, "scale", &obj.getattr("scale")?)?,
                ratio: pair(k, "ratio", &obj.getattr("ratio")?)?,
            })
        }
        "Resize" => Op::Resize(Resize::new(positive(k, attr::<i64>(obj, k, "size")?)?)),
        "CenterCrop" => {
            let (height, width) = size(k, &obj.getattr("size")?)?;
            Op::CenterCrop(CenterCrop { height, width })
        }
        "RandomHorizontalFlip" => {
            Op::RandomHorizontalFlip(RandomHorizontalFlip::new(f32_attr("p")?))
        }
        "ColorJitter" => Op::ColorJitter(jitter(obj)?),
        "RandomGrayscale" => Op::RandomGrayscale(RandomGrayscale::new(f32_attr("p")?)),
        "GaussianBlur" => {
            let (lo, hi) = pair(k, "sigma", &obj.getattr("sigma")?)?;
            let kernel = positive(k, attr::<i64>(obj, k, "kernel_size")?)?;
            Op::GaussianBlur(
                GaussianBlur::new(kernel, (lo as f32, hi as f32)).with_probability(f32_attr("p")?),
            )
        }
        "Normalize" => Op::Normalize(Normalize {
            mean: attr(obj, k, "mean")?,
            std: attr(obj, k, "std")?,
            dtype: dtype(&format!("{k}.dtype"), &attr::<String>(obj, k, "dtype")?)?,
            layout: layout(&format!("{k}.layout"), &attr::<String>(obj, k, "layout")?)?,
        }),
        "Cast" => Op::Cast(Cast {
            dtype: dtype(&format!("{k}.dtype"), &attr::<String>(obj, k, "dtype")?)?,
            layout: layout(&format!("{k}.layout"), &attr::<String>(obj, k, "layout")?)?,
        }),
        "Lambda" => crate::user_ops::lambda_from_py(obj)?,
        "DecodeAudio" | "Tokenize" => {
            return Err(bad_setting(
                "ops",
                format!("{k} must come first (it is how an audio or text pipeline starts)"),
            ))
        }
        other => match crate::audio_ops::audio_op_from_py(obj, other)? {
            Some(a) => Op::Audio(a),
            None => match crate::text_ops::text_op_from_py(obj.py(), obj, other, tokenizer)? {
                Some(t) => Op::Text(t),
                None => {
                    return Err(bad_setting(
                        "ops",
                        format!("unknown operator kind {other:?}"),
                    ))
                }
            },
        },
    };
    let pin = match attr::<Option<String>>(obj, k, "on")? {
        Some(name) => Some(placement(&format!("{k}.on"), &name)?),
        None => None,
    };
    Ok(Declared {
        op,
        pin,
        fixed: attr(obj, k, "fixed")?,
    })
}

/// ColorJitter: each adjustment a strength (torchvision: factor in [max(0, 1 - s), 1 + s], hue
/// shift in [-s, s]; 0 leaves it out) or an explicit (low, high) range.
fn jitter(obj: &Bound<'_, PyAny>) -> PyResult<ColorJitter> {
    let k = "ColorJitter";
    let mut strengths = [0f32; 4];
    let mut ranges = [None; 4];
    for (i, field) in ["brightness", "contrast", "saturation", "hue"]
        .iter()
        .enumerate()
    {
        let value = obj.getattr(*field)?;
        if let Ok(s) = value.extract::<f32>() {
            strengths[i] = s;
        } else {
            let (lo, hi) = pair(k, field, &value)?;
            ranges[i] = Some((lo as f32, hi as f32));
        }
    }
    let [b, c, s, h] = strengths;
    let mut j = ColorJitter::new(b, c, s, h).with_probability(attr(obj, k, "p")?);
    for (slot, range) in [
        &mut j.brightness,
        &mut j.contrast,
        &mut j.saturation,
        &mut j.hue,
    ]
    .into_iter()
    .zip(ranges)
    {
        if range.is_some() {
            *slot = range;
        }
    }
    Ok(j)
}

fn positive(op: &str, v: i64) -> PyResult<u32> {
    u32::try_from(v)
        .ok()
        .filter(|&s| s > 0)
        .ok_or_else(|| bad_setting(op, format!("{v} is not a positive size")))
}

/// A core operator as the `sluice.ops` declaration that builds it.
pub fn op_to_py<'py>(
    py: Python<'py>,
    op: &Op,
    pin: Option<Placement>,
) -> PyResult<Bound<'py, PyAny>> {
    let ops = py.import("sluice.ops")?;
    let kw = PyDict::new(py);
    if let Some(p) = pin {
        kw.set_item("on", placement_name(p))?;
    }
    match op {
        Op::Audio(a) => return crate::audio_ops::audio_op_to_py(py, a, kw),
        Op::Text(t) => return crate::text_ops::text_op_to_py(py, t, kw),
        Op::User(u) => {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "{} is a Rust user-defined operator: it has no Python declaration",
                u.name()
            )))
        }
        _ => {}
    }
    let name = op.name();
    let class = ops.getattr(name)?;
    // Ranges go over as ranges (exact); an adjustment left out as 0.
    let range = |r: Option<(f32, f32)>| -> PyResult<Bound<'py, PyAny>> {
        match r {
            Some(pair) => Ok(pair.into_pyobject(py)?.into_any()),
            None => Ok(0.0f32.into_pyobject(py)?.into_any()),
        }
    };
    match op {
        Op::RandomResizedCrop(o) => {
            kw.set_item("scale", o.scale)?;
            kw.set_item("ratio", o.ratio)?;
            class.call(((o.height, o.width),), Some(&kw))
        }
        Op::Resize(o) => class.call((o.shorter_side,), Some(&kw)),
        Op::CenterCrop(o) => class.call(((o.height, o.width),), Some(&kw)),
        Op::RandomHorizontalFlip(o) => class.call((o.p,), Some(&kw)),
        Op::ColorJitter(o) => {
            kw.set_item("brightness", range(o.brightness)?)?;
            kw.set_item("contrast", range(o.contrast)?)?;
            kw.set_item("saturation", range(o.saturation)?)?;
            kw.set_item("hue", range(o.hue)?)?;
            kw.set_item("p", o.p)?;
            class.call((), Some(&kw))
        }
        Op::RandomGrayscale(o) => class.call((o.p,), Some(&kw)),
        Op::Audio(_) | Op::Text(_) | Op::User(_) => unreachable!("handled above"),
        Op::GaussianBlur(o) => {
            kw.set_item("sigma", o.sigma)?;
            kw.set_item("p", o.p)?;
            class.call((o.kernel_size,), Some(&kw))
        }
        Op::Normalize(o) => {
            kw.set_item("dtype", dtype_name(o.dtype))?;
            kw.set_item("layout", layout_name(o.layout))?;
            class.call((o.mean.to_vec(), o.std.to_vec()), Some(&kw))
        }
        Op::Cast(o) => {
            kw.set_item("dtype", dtype_name(o.dtype))?;
            kw.set_item("layout", layout_name(o.layout))?;
            class.call((), Some(&kw))
        }
    }
}
