//! `DecodeAudio`: WAV (PCM 8/16/24/32-bit, float 32/64, WAVE_EXTENSIBLE, chunks in any order) and
//! FLAC through symphonia, to f32, then a mono mix-down (the mean of the channels) or one
//! selected channel. Declared sizes are checked against [`AudioLimits`] before any sample is
//! decoded, and the running total while decoding, so a header that lies cannot make it allocate
//! without bound.

use super::Audio;
use symphonia::core::audio::{AudioBuffer, AudioBufferRef, Signal};
use symphonia::core::codecs::{DecoderOptions, CODEC_TYPE_NULL};
use symphonia::core::conv::IntoSample;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::{MediaSourceStream, MediaSourceStreamOptions};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;
use symphonia::core::sample::Sample;

/// Bounds against decompression bombs and nonsense headers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AudioLimits {
    pub max_seconds: f64,
    pub max_channels: usize,
    pub max_rate: u32,
}

impl Default for AudioLimits {
    fn default() -> Self {
        AudioLimits {
            max_seconds: 600.0,
            max_channels: 32,
            max_rate: 384_000,
        }
    }
}

/// What to keep of a multi-channel file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChannelChoice {
    /// The mean of all channels.
    #[default]
    Mono,
    /// Channel `n` (0-based); an error if the file has fewer.
    Select(usize),
    /// Every channel as it is.
    All,
}

/// Decode one file's bytes. The error says what is wrong (no audio track, an unsupported
/// codec, a limit exceeded, truncated data). Never panics: symphonia asserts on some malformed
/// headers (a zero sample rate), so WAV headers are checked first and a panic that still
/// escapes the decoder is turned into an error.
pub fn decode_audio(
    bytes: Vec<u8>,
    limits: &AudioLimits,
    keep: ChannelChoice,
) -> Result<Audio, String> {
    if bytes.is_empty() {
        return Err("empty file".into());
    }
    check_wav_format(&bytes)?;
    let limits = *limits;
    std::panic::catch_unwind(move || decode_checked(bytes, &limits, keep))
        .unwrap_or_else(|_| Err("the decoder failed on malformed data".into()))
}

/// For a RIFF/WAVE file, the `fmt ` chunk's channels, rate and bits must be non-zero (the
/// header fields only; symphonia decodes the samples).
fn check_wav_format(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() < 12 || &bytes[..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Ok(());
    }
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let size = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        if &bytes[at..at + 4] == b"fmt " {
            let fmt = bytes
                .get(at + 8..at + 8 + size.min(16))
                .filter(|f| f.len() >= 16);
            let fmt = fmt.ok_or("a WAV fmt chunk shorter than 16 bytes")?;
            let u16_at = |i: usize| u16::from_le_bytes([fmt[i], fmt[i + 1]]);
            let rate = u32::from_le_bytes(fmt[4..8].try_into().unwrap());
            let (channels, bits) = (u16_at(2), u16_at(14));
            if channels == 0 || rate == 0 || bits == 0 {
                return Err(format!(
                    "a WAV header with {channels} channels, {rate} Hz, {bits} bits per sample"
                ));
            }
            return Ok(());
        }
        at = at
            .saturating_add(8)
            .saturating_add(size)
            .saturating_add(size & 1);
    }
    Err("a WAV file without a fmt chunk".into())
}

/// Convert a decoded packet straight onto the end of the f32 planes (symphonia's own sample
/// conversion, so the values are those of its `SampleBuffer`, without that extra copy).
fn append_planes(decoded: AudioBufferRef<'_>, planes: &mut [Vec<f32>]) {
    fn extend<S: Sample + IntoSample<f32>>(buf: &AudioBuffer<S>, planes: &mut [Vec<f32>]) {
        for (c, plane) in planes.iter_mut().enumerate() {
            plane.extend(buf.chan(c).iter().map(|&s| s.into_sample()));
        }
    }
    match decoded {
        AudioBufferRef::U8(b) => extend(&b, planes),
        AudioBufferRef::U16(b) => extend(&b, planes),
        AudioBufferRef::U24(b) => extend(&b, planes),
        AudioBufferRef::U32(b) => extend(&b, planes),
        AudioBufferRef::S8(b) => extend(&b, planes),
        AudioBufferRef::S16(b) => extend(&b, planes),
        AudioBufferRef::S24(b) => extend(&b, planes),
        AudioBufferRef::S32(b) => extend(&b, planes),
        AudioBufferRef::F32(b) => extend(&b, planes),
        AudioBufferRef::F64(b) => extend(&b, planes),
    }
}

fn decode_checked(
    bytes: Vec<u8>,
    limits: &AudioLimits,
    keep: ChannelChoice,
) -> Result<Audio, String> {
    let file_len = bytes.len();
    let stream = MediaSourceStream::new(
        Box::new(std::io::Cursor::new(bytes)),
        MediaSourceStreamOptions::default(),
    );
    let probed = symphonia::default::get_probe()
        .format(
            &Hint::new(),
            stream,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .map_err(|e| format!("not a WAV or FLAC file ({})", describe(&e)))?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or("no audio track")?;
    let params = track.codec_params.clone();
    let track_id = track.id;
    let rate = params.sample_rate.ok_or("no sample rate")?;
    if rate == 0 || rate > limits.max_rate {
        return Err(format!(
            "sample rate {rate} Hz (allowed 1..={})",
            limits.max_rate
        ));
    }
    let channels = params.channels.map_or(0, |c| c.count());
    if channels == 0 || channels > limits.max_channels {
        return Err(format!(
            "{channels} channels (allowed 1..={})",
            limits.max_channels
        ));
    }
    let max_frames = (limits.max_seconds * f64::from(rate)) as u64;
    if let Some(n) = params.n_frames {
        if n > max_frames {
            return Err(format!(
                "declares {:.1} s of audio (limit {} s)",
                n as f64 / f64::from(rate),
                limits.max_seconds
            ));
        }
    }
    let mut decoder = symphonia::default::get_codecs()
        .make(&params, &DecoderOptions::default())
        .map_err(|e| format!("unsupported codec ({})", describe(&e)))?;
    let mut planes: Vec<Vec<f32>> = vec![Vec::new(); channels];
    if let Some(n) = params.n_frames {
        // One allocation per channel for honest headers; a header may still lie within the
        // limits, so never reserve more samples than the file has bytes.
        let n = (n as usize).min(file_len);
        planes.iter_mut().for_each(|p| p.reserve_exact(n));
    }
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                break
            }
            Err(e) => return Err(format!("reading: {}", describe(&e))),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = decoder
            .decode(&packet)
            .map_err(|e| format!("decoding: {}", describe(&e)))?;
        if decoded.spec().channels.count() != channels {
            return Err("the channel count changes mid-stream".into());
        }
        if (planes[0].len() + decoded.frames()) as u64 > max_frames {
            return Err(format!("longer than the {} s limit", limits.max_seconds));
        }
        append_planes(decoded, &mut planes);
    }
    if let Some(n) = params.n_frames {
        if (planes[0].len() as u64) < n {
            return Err(format!(
                "truncated: {} of the {n} declared frames",
                planes[0].len()
            ));
        }
    }
    if planes[0].is_empty() {
        return Err("no samples".into());
    }
    let channels = match keep {
        ChannelChoice::All => planes,
        ChannelChoice::Select(c) if c < planes.len() => vec![planes.swap_remove(c)],
        ChannelChoice::Select(c) => {
            return Err(format!(
                "channel {c} selected, the file has {}",
                planes.len()
            ))
        }
        ChannelChoice::Mono if planes.len() == 1 => planes,
        ChannelChoice::Mono => {
            let n = planes.len() as f32;
            let mut mono = vec![0f32; planes[0].len()];
            for plane in &planes {
                for (m, s) in mono.iter_mut().zip(plane) {
                    *m += s;
                }
            }
            mono.iter_mut().for_each(|m| *m /= n);
            vec![mono]
        }
    };
    Ok(Audio { rate, channels })
}

fn describe(e: &SymphoniaError) -> String {
    match e {
        SymphoniaError::IoError(io) => format!("I/O: {io}"),
        SymphoniaError::DecodeError(d) => format!("malformed: {d}"),
        SymphoniaError::SeekError(_) => "seek failed".into(),
        SymphoniaError::Unsupported(u) => format!("unsupported: {u}"),
        SymphoniaError::LimitError(l) => format!("limit: {l}"),
        SymphoniaError::ResetRequired => "decoder reset required".into(),
    }
}
