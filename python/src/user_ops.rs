//! `ops.Lambda`: a Python callable as a user-defined operator (the core's `UserOp`). The worker
//! thread takes the GIL for the call only: the sample's value goes in as a writable NumPy array
//! (image: uint8 `(H, W, 3)`; audio: float32 `(channels, samples)`; features: float32
//! `(bins, frames)`), the callable's result comes back as the declared output kind. A random
//! Lambda also gets a `numpy.random.Generator` seeded from the sample's own counter-RNG stream,
//! so its draws depend only on (seed, epoch, sample, operator). An exception, or a result of the
//! wrong shape, is the sample's error naming the operator.

use crate::convert::attr;
use crate::errors::bad_setting;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyTuple};
use sluice::audio::{Audio, Features};
use sluice::ops::{Op, SizeRule, UserOp, Value, ValueKind};
use sluice::rng::SampleRng;
use sluice::Image;

fn kind(setting: &str, name: &str) -> PyResult<ValueKind> {
    match name {
        "image" => Ok(ValueKind::ImageU8),
        "audio" => Ok(ValueKind::Audio),
        "features" => Ok(ValueKind::Features),
        _ => Err(bad_setting(
            setting,
            format!("{name:?} is not one of image, audio, features"),
        )),
    }
}

/// A `sluice.ops.Lambda` declaration as a core operator.
pub fn lambda_from_py(obj: &Bound<'_, PyAny>) -> PyResult<Op> {
    let k = "Lambda";
    let fun = obj.getattr("fn")?;
    if !fun.is_callable() {
        return Err(bad_setting("Lambda.fn", "must be callable"));
    }
    let input = kind("Lambda.input", &attr::<String>(obj, k, "input")?)?;
    let output = match attr::<Option<String>>(obj, k, "output")? {
        Some(name) => kind("Lambda.output", &name)?,
        None => input,
    };
    let random: bool = attr(obj, k, "random")?;
    let name = match attr::<Option<String>>(obj, k, "name")? {
        Some(n) => n,
        None => fun
            .getattr("__name__")
            .and_then(|n| n.extract::<String>())
            .unwrap_or_else(|_| k.to_string()),
    };
    // Images: the declared output size ("same", (height, width), or None: data-dependent).
    let size_obj = obj.getattr("size")?;
    let size = if size_obj.is_none() {
        SizeRule::DataDependent
    } else if size_obj.extract::<String>().is_ok_and(|s| s == "same") {
        SizeRule::Same
    } else if let Ok((height, width)) = size_obj.extract::<(u32, u32)>() {
        SizeRule::Fixed { height, width }
    } else {
        return Err(bad_setting(
            "Lambda.size",
            "give None, \"same\" or a (height, width) pair",
        ));
    };
    let call = PythonCall {
        fun: fun.unbind(),
        random,
        output,
    };
    let body = move |v: &mut Value, rng: &mut SampleRng| call.apply(v, rng);
    Ok(Op::User(
        UserOp::new(name, input, output, body)
            .random(random)
            .size(size),
    ))
}

struct PythonCall {
    fun: Py<PyAny>,
    random: bool,
    output: ValueKind,
}

impl PythonCall {
    fn apply(&self, value: &mut Value, rng: &mut SampleRng) -> Result<(), String> {
        Python::attach(|py| {
            self.call(py, value, rng).map_err(|e| {
                let what = e
                    .value(py)
                    .repr()
                    .map_or_else(|_| e.to_string(), |r| r.to_string());
                format!("the Python function raised {what}")
            })
        })
    }

    fn call(&self, py: Python<'_>, value: &mut Value, rng: &mut SampleRng) -> PyResult<()> {
        let np = py.import("numpy")?;
        let (bytes, shape, dtype, rate): (Vec<u8>, Vec<usize>, &str, u32) = match &*value {
            Value::Image(i) => (
                i.data.clone(),
                vec![i.height as usize, i.width as usize, 3],
                "uint8",
                0,
            ),
            Value::Audio(a) => (
                a.channels
                    .iter()
                    .flatten()
                    .flat_map(|s| s.to_le_bytes())
                    .collect(),
                vec![a.channels.len(), a.channels.first().map_or(0, Vec::len)],
                "float32",
                a.rate,
            ),
            Value::Features(f) => (
                f.data.iter().flat_map(|s| s.to_le_bytes()).collect(),
                vec![f.bins, f.frames],
                "float32",
                f.rate,
            ),
            other => {
                return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                    "{:?} values have no NumPy form",
                    other.kind()
                )))
            }
        };
        let array = np
            .call_method1("frombuffer", (PyByteArray::new(py, &bytes), dtype))?
            .call_method1("reshape", (PyTuple::new(py, shape)?,))?;
        let fun = self.fun.bind(py);
        let result = if self.random {
            let seed = (u64::from(rng.next_u32()) << 32) | u64::from(rng.next_u32());
            let generator = np.getattr("random")?.call_method1("default_rng", (seed,))?;
            fun.call1((array, generator))?
        } else {
            fun.call1((array,))?
        };
        let dtype = if self.output == ValueKind::ImageU8 {
            "uint8"
        } else {
            "float32"
        };
        let out = np.call_method1("ascontiguousarray", (result, dtype))?;
        let shape: Vec<usize> = out.getattr("shape")?.extract()?;
        let data = out.call_method0("tobytes")?;
        let data = data.cast::<PyBytes>()?.as_bytes();
        let floats = || -> Vec<f32> {
            data.chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect()
        };
        let wrong = |want: &str| {
            pyo3::exceptions::PyValueError::new_err(format!(
                "returned an array of shape {shape:?}; {want}"
            ))
        };
        *value = match (self.output, shape.as_slice()) {
            (ValueKind::ImageU8, &[h, w, 3]) => {
                Value::Image(Image::new(w as u32, h as u32, data.to_vec()))
            }
            (ValueKind::ImageU8, _) => return Err(wrong("an image is (height, width, 3) uint8")),
            (ValueKind::Audio, &[n]) => Value::Audio(Audio {
                rate,
                channels: vec![floats()[..n].to_vec()],
            }),
            (ValueKind::Audio, &[c, n]) if c > 0 => Value::Audio(Audio {
                rate,
                channels: floats()
                    .chunks_exact(n.max(1))
                    .map(<[f32]>::to_vec)
                    .collect(),
            }),
            (ValueKind::Audio, _) => {
                return Err(wrong("audio is (samples,) or (channels, samples) float32"))
            }
            (ValueKind::Features, &[bins, frames]) => Value::Features(Features {
                bins,
                frames,
                data: floats(),
                rate,
            }),
            (_, _) => return Err(wrong("features are (bins, frames) float32")),
        };
        Ok(())
    }
}
