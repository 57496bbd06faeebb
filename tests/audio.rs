//! Audio decoding against libsndfile's samples (tests/fixtures/audio, made by make.py there):
//! every WAV variant (PCM 8/16/24/32, float 32/64, WAVE_EXTENSIBLE, chunks in an unusual order)
//! and FLAC decode to the same samples; mono mix-down and channel selection; bad audio is a clear
//! error, never a panic or an unbounded allocation.

use sluice::audio::{decode_audio, AudioLimits, ChannelChoice};
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/audio")
}

fn manifest() -> serde_json::Map<String, serde_json::Value> {
    let text = std::fs::read_to_string(dir().join("manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn expected(name: &str) -> Vec<f32> {
    let bytes = std::fs::read(dir().join(format!("{name}.f32"))).unwrap();
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(dir().join(name)).unwrap()
}

#[test]
fn every_wav_variant_and_flac_decodes_to_libsndfiles_samples() {
    let files = manifest();
    assert!(files.len() >= 10, "{files:?}");
    for (name, meta) in &files {
        let audio = decode_audio(read(name), &AudioLimits::default(), ChannelChoice::All)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let (rate, channels, frames) = (
            meta["rate"].as_u64().unwrap() as u32,
            meta["channels"].as_u64().unwrap() as usize,
            meta["frames"].as_u64().unwrap() as usize,
        );
        assert_eq!(
            (audio.rate, audio.channels.len(), audio.frames()),
            (rate, channels, frames),
            "{name}"
        );
        let want = expected(name);
        assert_eq!(want.len(), frames * channels, "{name}");
        // Integer PCM scales by 2^(bits-1) in both decoders; float is carried through.
        for (i, w) in want.iter().enumerate() {
            let g = audio.channels[i % channels][i / channels];
            assert!((g - w).abs() <= 1e-7, "{name} sample {i}: {g} vs {w}");
        }
    }
}

#[test]
fn mono_is_the_mean_of_the_channels_and_a_channel_can_be_chosen() {
    let name = "float32_stereo.wav";
    let want = expected(name);
    let limits = AudioLimits::default();
    let mono = decode_audio(read(name), &limits, ChannelChoice::Mono).unwrap();
    assert_eq!(mono.channels.len(), 1);
    for (t, m) in mono.channels[0].iter().enumerate() {
        assert!(
            (m - (want[2 * t] + want[2 * t + 1]) / 2.0).abs() <= 1e-7,
            "frame {t}"
        );
    }
    let right = decode_audio(read(name), &limits, ChannelChoice::Select(1)).unwrap();
    let want_right: Vec<f32> = want.iter().skip(1).step_by(2).copied().collect();
    assert_eq!(right.channels, vec![want_right]);
    let err = decode_audio(read(name), &limits, ChannelChoice::Select(2)).unwrap_err();
    assert!(err.contains("channel 2") && err.contains("has 2"), "{err}");
}

/// `bytes` with the little-endian u16/u32 at `at` replaced.
fn patched(mut bytes: Vec<u8>, at: usize, value: &[u8]) -> Vec<u8> {
    bytes[at..at + value.len()].copy_from_slice(value);
    bytes
}

#[test]
fn bad_audio_is_a_clear_error() {
    let limits = AudioLimits::default();
    let wav = read("pcm16_stereo.wav");
    // The canonical 44-byte header: channels at 22, rate at 24, bits at 34, data size at 40.
    assert_eq!(&wav[36..40], b"data", "fixture layout");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", Vec::new(), "empty"),
        (
            "text named .wav",
            b"this is not audio at all".to_vec(),
            "not a WAV or FLAC",
        ),
        ("truncated", wav[..wav.len() / 2].to_vec(), "truncated"),
        (
            "zero channels",
            patched(wav.clone(), 22, &0u16.to_le_bytes()),
            "0 channels",
        ),
        (
            "zero rate",
            patched(wav.clone(), 24, &0u32.to_le_bytes()),
            "0 Hz",
        ),
        (
            "zero bits",
            patched(wav.clone(), 34, &0u16.to_le_bytes()),
            "0 bits",
        ),
        (
            "absurd declared size",
            patched(wav.clone(), 40, &0xFFFF_FFF0u32.to_le_bytes()),
            "chunk length",
        ),
        ("unknown codec", read("ima_adpcm.wav"), "unsupported codec"),
        ("header only", wav[..44].to_vec(), "0 of the 800"),
    ];
    for (what, bytes, contains) in cases {
        let outcome =
            std::panic::catch_unwind(|| decode_audio(bytes.clone(), &limits, ChannelChoice::Mono));
        let result = outcome.unwrap_or_else(|_| panic!("{what}: the decoder panicked"));
        let err = result
            .err()
            .unwrap_or_else(|| panic!("{what}: decoded without an error"));
        assert!(err.contains(contains), "{what}: {err}");
    }
    // A file longer than the limit: refused from the header, before decoding.
    let tight = AudioLimits {
        max_seconds: 0.01,
        ..AudioLimits::default()
    };
    let err = decode_audio(wav.clone(), &tight, ChannelChoice::Mono).unwrap_err();
    assert!(err.contains("0.01 s"), "{err}");
    let few = AudioLimits {
        max_channels: 1,
        ..AudioLimits::default()
    };
    assert!(decode_audio(wav, &few, ChannelChoice::Mono)
        .unwrap_err()
        .contains("2 channels"));
}
