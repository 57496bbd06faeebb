//! The speech declarations of `sluice.ops` (DecodeAudio and the audio operators) to and from
//! the core crate's types.

use crate::errors::bad_setting;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use sluice::audio::WindowKind;
use sluice::audio::{AudioLimits, ChannelChoice, MelNorm, MelScale, Padding, SpectrogramSpec};
use sluice::ops::{AudioOp, DecodeAudio, MaskSpec, MelSpec};

use crate::convert::attr as get;

fn positive(op: &str, field: &str, v: i64) -> PyResult<usize> {
    crate::convert::count(&format!("{op}.{field}"), v, 1)
}

/// The value a string setting names among `choices`, or a ValueError listing them.
fn choose<T: Copy>(op: &str, field: &str, given: &str, choices: &[(&str, T)]) -> PyResult<T> {
    choices
        .iter()
        .find(|(name, _)| *name == given)
        .map(|&(_, v)| v)
        .ok_or_else(|| {
            let names: Vec<String> = choices.iter().map(|(n, _)| format!("{n:?}")).collect();
            bad_setting(
                &format!("{op}.{field}"),
                format!("{given:?}: give {}", names.join(" or ")),
            )
        })
}

/// `sluice.ops.DecodeAudio` as the core decoder.
pub fn decode_audio_from_py(obj: &Bound<'_, PyAny>) -> PyResult<DecodeAudio> {
    let k = "DecodeAudio";
    let channels = obj.getattr("channels")?;
    let keep = if let Ok(n) = channels.extract::<i64>() {
        let n = usize::try_from(n)
            .map_err(|_| bad_setting("DecodeAudio.channels", format!("{n} is negative")))?;
        ChannelChoice::Select(n)
    } else {
        match channels.extract::<String>().as_deref() {
            Ok("mono") => ChannelChoice::Mono,
            Ok("all") => ChannelChoice::All,
            _ => {
                return Err(bad_setting(
                    "DecodeAudio.channels",
                    "give \"mono\", \"all\" or a channel number",
                ))
            }
        }
    };
    let max_seconds: f64 = get(obj, k, "max_seconds")?;
    if !(max_seconds > 0.0 && max_seconds.is_finite()) {
        return Err(bad_setting(
            "DecodeAudio.max_seconds",
            format!("{max_seconds} must be positive"),
        ));
    }
    Ok(DecodeAudio {
        keep,
        limits: AudioLimits {
            max_seconds,
            ..AudioLimits::default()
        },
    })
}

fn mask(obj: &Bound<'_, PyAny>, k: &str) -> PyResult<MaskSpec> {
    let count: i64 = get(obj, k, "count")?;
    Ok(MaskSpec {
        count: u32::try_from(count)
            .map_err(|_| bad_setting(&format!("{k}.count"), format!("{count} is negative")))?,
        max_width: get(obj, k, "max_width")?,
        max_fraction: get(obj, k, "max_fraction")?,
        fill: get(obj, k, "fill")?,
    })
}

/// The speech operator declared by `obj` (of kind `k`), or None when `k` is not one.
pub fn audio_op_from_py(obj: &Bound<'_, PyAny>, k: &str) -> PyResult<Option<AudioOp>> {
    Ok(Some(match k {
        "Resample" => {
            let rate: i64 = get(obj, k, "rate")?;
            AudioOp::Resample {
                rate: u32::try_from(positive(k, "rate", rate)?)
                    .map_err(|_| bad_setting("Resample.rate", "too large"))?,
            }
        }
        "Dither" => AudioOp::Dither {
            scale: get(obj, k, "scale")?,
        },
        "PreEmphasis" => AudioOp::PreEmphasis {
            coefficient: get(obj, k, "coefficient")?,
        },
        "Spectrogram" => {
            let n_fft = positive(k, "n_fft", get(obj, k, "n_fft")?)?;
            let win_length = match get::<Option<i64>>(obj, k, "win_length")? {
                Some(w) => positive(k, "win_length", w)?,
                None => n_fft,
            };
            let hop = match get::<Option<i64>>(obj, k, "hop_length")? {
                Some(h) => positive(k, "hop_length", h)?,
                None => (win_length / 2).max(1),
            };
            let padding = choose(
                k,
                "pad_mode",
                &get::<String>(obj, k, "pad_mode")?,
                &[
                    ("reflect", Padding::Reflect),
                    ("constant", Padding::Constant),
                ],
            )?;
            AudioOp::Spectrogram(SpectrogramSpec {
                n_fft,
                win_length,
                hop,
                window: if get(obj, k, "periodic")? {
                    WindowKind::HannPeriodic
                } else {
                    WindowKind::HannSymmetric
                },
                center: get(obj, k, "center")?,
                padding,
                power: get(obj, k, "power")?,
            })
        }
        "MelScale" => {
            let scale = choose(
                k,
                "mel_scale",
                &get::<String>(obj, k, "mel_scale")?,
                &[("htk", MelScale::Htk), ("slaney", MelScale::Slaney)],
            )?;
            let norm = match get::<Option<String>>(obj, k, "norm")?.as_deref() {
                None => MelNorm::None,
                Some("slaney") => MelNorm::Slaney,
                Some(other) => {
                    return Err(bad_setting(
                        "MelScale.norm",
                        format!("{other:?}: give None or \"slaney\""),
                    ))
                }
            };
            AudioOp::MelScale(MelSpec {
                n_mels: positive(k, "n_mels", get(obj, k, "n_mels")?)?,
                f_min: get(obj, k, "f_min")?,
                f_max: get(obj, k, "f_max")?,
                scale,
                norm,
            })
        }
        "TimeStretch" => {
            let rate = obj.getattr("rate")?;
            let (min_rate, max_rate) = match rate.extract::<f64>() {
                Ok(r) => (r, r),
                Err(_) => rate.extract::<(f64, f64)>().map_err(|_| {
                    bad_setting("TimeStretch.rate", "give a number or a (low, high) pair")
                })?,
            };
            AudioOp::TimeStretch { min_rate, max_rate }
        }
        "ComplexNorm" => AudioOp::ComplexNorm {
            power: get(obj, k, "power")?,
        },
        "Log" => AudioOp::Log {
            eps: get(obj, k, "eps")?,
        },
        "FeatureNormalize" => AudioOp::FeatureNormalize,
        "FrequencyMasking" => AudioOp::FrequencyMasking(mask(obj, k)?),
        "TimeMasking" => AudioOp::TimeMasking(mask(obj, k)?),
        _ => return Ok(None),
    }))
}

/// `DecodeAudio` as its `sluice.ops` declaration.
pub fn decode_audio_to_py<'py>(py: Python<'py>, d: &DecodeAudio) -> PyResult<Bound<'py, PyAny>> {
    let kw = PyDict::new(py);
    match d.keep {
        ChannelChoice::Mono => kw.set_item("channels", "mono")?,
        ChannelChoice::All => kw.set_item("channels", "all")?,
        ChannelChoice::Select(n) => kw.set_item("channels", n)?,
    }
    kw.set_item("max_seconds", d.limits.max_seconds)?;
    py.import("sluice.ops")?
        .getattr("DecodeAudio")?
        .call((), Some(&kw))
}

/// A speech operator as its `sluice.ops` declaration (`kw` already holds `on`/`fixed`).
pub fn audio_op_to_py<'py>(
    py: Python<'py>,
    op: &AudioOp,
    kw: Bound<'py, PyDict>,
) -> PyResult<Bound<'py, PyAny>> {
    let class = py.import("sluice.ops")?.getattr(op.kind().name())?;
    match op {
        AudioOp::Resample { rate } => kw.set_item("rate", rate)?,
        AudioOp::Dither { scale } => kw.set_item("scale", scale)?,
        AudioOp::PreEmphasis { coefficient } => kw.set_item("coefficient", coefficient)?,
        AudioOp::Spectrogram(s) => {
            kw.set_item("n_fft", s.n_fft)?;
            kw.set_item("win_length", s.win_length)?;
            kw.set_item("hop_length", s.hop)?;
            kw.set_item("periodic", s.window == WindowKind::HannPeriodic)?;
            kw.set_item("center", s.center)?;
            let pad = match s.padding {
                Padding::Reflect => "reflect",
                Padding::Constant => "constant",
            };
            kw.set_item("pad_mode", pad)?;
            kw.set_item("power", s.power)?;
        }
        AudioOp::MelScale(m) => {
            kw.set_item("n_mels", m.n_mels)?;
            kw.set_item("f_min", m.f_min)?;
            kw.set_item("f_max", m.f_max)?;
            let scale = match m.scale {
                MelScale::Htk => "htk",
                MelScale::Slaney => "slaney",
            };
            kw.set_item("mel_scale", scale)?;
            let norm = match m.norm {
                MelNorm::None => None,
                MelNorm::Slaney => Some("slaney"),
            };
            kw.set_item("norm", norm)?;
        }
        AudioOp::TimeStretch { min_rate, max_rate } if min_rate == max_rate => {
            kw.set_item("rate", min_rate)?
        }
        AudioOp::TimeStretch { min_rate, max_rate } => kw.set_item("rate", (min_rate, max_rate))?,
        AudioOp::ComplexNorm { power } => kw.set_item("power", power)?,
        AudioOp::Log { eps } => kw.set_item("eps", eps)?,
        AudioOp::FeatureNormalize => {}
        AudioOp::FrequencyMasking(m) | AudioOp::TimeMasking(m) => {
            kw.set_item("max_width", m.max_width)?;
            kw.set_item("count", m.count)?;
            kw.set_item("max_fraction", m.max_fraction)?;
            kw.set_item("fill", m.fill)?;
        }
    }
    class.call((), Some(&kw))
}
