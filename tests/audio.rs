//! Audio decoding against libsndfile's samples (tests/fixtures/audio, made by make.py there):
//! every WAV variant (PCM 8/16/24/32, float 32/64, WAVE_EXTENSIBLE, chunks in an unusual order)
//! and FLAC decode to the same samples; mono mix-down and channel selection; bad audio is a clear
//! error, never a panic or an unbounded allocation.

use sluice::audio::{decode_audio, AudioLimits, ChannelChoice};
use std::path::PathBuf;

mod common;

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

mod pipelines {
    use super::common::epoch_outputs;
    use sluice::audio::{
        complex_norm, feature_normalize, log_compress, mel_filterbank, pre_emphasis, resample,
        spectrogram, stft, time_stretch, MelNorm, MelScale,
    };
    use sluice::bench::Workload;
    use sluice::gen::audio::{write_audio_dataset, AudioDatasetSpec};
    use sluice::ops::{AudioOp, DecodeAudio, Normalize};
    use sluice::source::{AudioFolder, Source};
    use sluice::{ErrorPolicy, Pipeline};

    fn dataset(files: usize) -> (tempfile::TempDir, AudioFolder) {
        let dir = tempfile::tempdir().unwrap();
        let spec = AudioDatasetSpec {
            files,
            classes: 3,
            seed: 5,
            max_seconds: 2.0,
        };
        write_audio_dataset(dir.path(), &spec, &|_| {}).unwrap();
        let folder = AudioFolder::open(dir.path()).unwrap();
        (dir, folder)
    }

    /// asr-val's features for one file, composed directly from the audio functions.
    fn reference_features(bytes: Vec<u8>) -> (usize, Vec<f32>) {
        let audio =
            super::decode_audio(bytes, &Default::default(), super::ChannelChoice::Mono).unwrap();
        let mut x = resample(&audio.channels[0], audio.rate, 16_000, 6, 0.99);
        pre_emphasis(&mut x, 0.97);
        let power = spectrogram(&x, &sluice::bench::ASR_SPECTROGRAM).unwrap();
        let fb = mel_filterbank(
            257,
            0.0,
            8000.0,
            80,
            16_000,
            MelNorm::Slaney,
            MelScale::Slaney,
        );
        let mut mel = power.project(&fb, 80);
        log_compress(&mut mel, 2f32.powi(-24));
        let frames = mel.frames;
        feature_normalize(&mut mel, frames);
        assert_eq!(frames, 1 + x.len() / 160, "T = 1 + samples // hop");
        (frames, mel.data)
    }

    /// asr-val batches padded to a multiple of `multiple` with `value`: every sample's
    /// features exact, its length reported, and nothing but `value` past it.
    fn check_padding(multiple: usize, value: f32) {
        let (_dir, folder) = dataset(7);
        // Shuffled epochs: batches of other lengths land in recycled buffers, whose old values
        // must not show through the padding.
        let p = Workload::AsrVal
            .add_ops(
                Pipeline::builder(folder.clone())
                    .batch_size(3)
                    .threads(2)
                    .shuffle(true)
                    .seed(2)
                    .pad_to_multiple_of(multiple)
                    .pad_value(value),
            )
            .build()
            .unwrap();
        let mut reference = std::collections::HashMap::new();
        let mut seen = 0;
        for batch in (0..4).flat_map(|e| p.epoch(e).unwrap()) {
            let batch = batch.unwrap();
            let dense = batch.dense().expect("a padded batch is one dense tensor");
            let (n, bins, longest) = (dense.shape[0], dense.shape[1], dense.shape[2]);
            assert_eq!((n, bins), (batch.len(), 80));
            assert_eq!(batch.lengths.len(), n);
            let max = *batch.lengths.iter().max().unwrap();
            assert_eq!(longest, max.next_multiple_of(multiple), "lengths {max}");
            let values = dense.to_f32_vec();
            for (j, &index) in batch.sample_indices.iter().enumerate() {
                let (frames, want) = reference.entry(index).or_insert_with(|| {
                    let mut bytes = Vec::new();
                    folder.read(index, &mut bytes).unwrap();
                    reference_features(bytes)
                });
                let frames = *frames;
                assert_eq!(batch.lengths[j], frames, "sample {index}");
                for bin in 0..80 {
                    let row = &values[(j * 80 + bin) * longest..(j * 80 + bin + 1) * longest];
                    assert_eq!(&row[..frames], &want[bin * frames..(bin + 1) * frames]);
                    assert!(
                        row[frames..].iter().all(|&v| v == value),
                        "padding is {value}"
                    );
                }
                seen += 1;
            }
        }
        assert_eq!(seen, 4 * 7);
    }

    /// cedar-asr without its masks, for one file, composed from the audio functions unfused.
    fn cedar_reference(bytes: Vec<u8>, rate: f64) -> (usize, Vec<f32>) {
        let audio =
            super::decode_audio(bytes, &Default::default(), super::ChannelChoice::Mono).unwrap();
        let x = resample(&audio.channels[0], audio.rate, 8_000, 6, 0.99);
        let spectrum = stft(&x, &sluice::bench::CEDAR_STFT).unwrap();
        let power = complex_norm(&time_stretch(&spectrum, rate).unwrap(), 2.0);
        let fb = mel_filterbank(201, 0.0, 4000.0, 256, 8_000, MelNorm::None, MelScale::Htk);
        let mel = power.project(&fb, 256);
        (mel.frames, mel.data)
    }

    fn cedar_without_masks(rate: (f64, f64)) -> Vec<AudioOp> {
        vec![
            AudioOp::Resample { rate: 8_000 },
            AudioOp::Spectrogram(sluice::bench::CEDAR_STFT),
            AudioOp::TimeStretch {
                min_rate: rate.0,
                max_rate: rate.1,
            },
            AudioOp::ComplexNorm { power: 2.0 },
            AudioOp::MelScale(sluice::ops::MelSpec {
                n_mels: 256,
                f_min: 0.0,
                f_max: None,
                scale: MelScale::Htk,
                norm: MelNorm::None,
            }),
        ]
    }

    #[test]
    fn stretched_mels_equal_the_composed_functions_fused_or_not() {
        let (_dir, folder) = dataset(4);
        for fuse in [true, false] {
            let mut b = Pipeline::builder(folder.clone())
                .decode_audio(DecodeAudio::default())
                .batch_size(2)
                .threads(2)
                .fuse(fuse);
            for op in cedar_without_masks((0.8, 0.8)) {
                b = b.op(op);
            }
            let p = b.build().unwrap();
            let fused = p
                .steps()
                .iter()
                .any(|s| s.name == "TimeStretch+ComplexNorm");
            assert_eq!(fused, fuse, "{:?}", p.steps());
            for batch in p.epoch(0).unwrap() {
                let batch = batch.unwrap();
                let dense = batch.dense().unwrap();
                let (bins, longest) = (dense.shape[1], dense.shape[2]);
                let values = dense.to_f32_vec();
                for (j, &index) in batch.sample_indices.iter().enumerate() {
                    let mut bytes = Vec::new();
                    folder.read(index, &mut bytes).unwrap();
                    let (frames, want) = cedar_reference(bytes, 0.8);
                    assert_eq!(batch.lengths[j], frames, "sample {index}");
                    let peak = want.iter().fold(0f32, |a, b| a.max(b.abs()));
                    for bin in 0..bins {
                        let row = &values[(j * bins + bin) * longest..][..frames];
                        let want = &want[bin * frames..(bin + 1) * frames];
                        for (g, w) in row.iter().zip(want) {
                            // Fused: magnitudes squared directly instead of through m·cos, m·sin.
                            assert!(
                                (g - w).abs() <= 1e-6 * peak + 1e-5 * w.abs(),
                                "fuse {fuse}, sample {index} bin {bin}: {g} vs {w}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn cedar_asr_draws_stretch_rates_per_sample_whatever_the_threads() {
        let (_dir, folder) = dataset(6);
        let run = |threads: usize| {
            let mut b = Pipeline::builder(folder.clone())
                .decode_audio(DecodeAudio::default())
                .batch_size(4)
                .threads(threads)
                .shuffle(true)
                .seed(3);
            for op in cedar_without_masks((0.7, 1.3)) {
                b = b.op(op);
            }
            let p = b.op(AudioOp::TimeMasking(sluice::ops::MaskSpec {
                count: 1,
                max_width: 80.0,
                max_fraction: 1.0,
                fill: 0.0,
            }));
            epoch_outputs(&p.build().unwrap(), 2)
        };
        let one = run(1);
        assert_eq!(one, run(2));
        assert_eq!(one, run(3));
        // Each sample's length is its STFT frames stretched by some rate in [0.7, 1.3], and the
        // rates differ between samples.
        let mut ratios = Vec::new();
        for (_, lengths, indices) in &one {
            for (&len, &index) in lengths.iter().zip(indices) {
                let mut bytes = Vec::new();
                folder.read(index, &mut bytes).unwrap();
                let (frames, _) = cedar_reference(bytes, 1.0);
                let ratio = frames as f64 / len as f64;
                assert!(
                    (0.69..=1.31).contains(&ratio),
                    "sample {index}: {frames} → {len}"
                );
                ratios.push(ratio);
            }
        }
        assert!(
            ratios.iter().any(|r| (r - ratios[0]).abs() > 0.02),
            "{ratios:?}"
        );
    }

    #[test]
    fn a_pipeline_cannot_end_with_complex_values() {
        let (_dir, folder) = dataset(1);
        let err = Pipeline::builder(folder)
            .decode_audio(DecodeAudio::default())
            .op(AudioOp::Spectrogram(sluice::bench::CEDAR_STFT))
            .op(AudioOp::TimeStretch {
                min_rate: 0.8,
                max_rate: 0.8,
            })
            .build()
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("complex STFT values from TimeStretch") && err.contains("ComplexNorm"),
            "{err}"
        );
    }

    #[test]
    fn asr_val_batches_are_padded_log_mels_with_lengths() {
        check_padding(1, 0.0);
    }

    #[test]
    fn padding_rounds_up_to_a_multiple_with_the_declared_value() {
        check_padding(8, -7.5);
    }

    #[test]
    fn padding_settings_are_checked() {
        let (_dir, folder) = dataset(2);
        let build = |b: sluice::PipelineBuilder| Workload::AsrVal.add_ops(b).build();
        let err = build(Pipeline::builder(folder.clone()).pad_to_multiple_of(0))
            .err()
            .unwrap();
        assert!(err.to_string().contains("pad_to_multiple_of"), "{err}");
        let err = build(Pipeline::builder(folder).pad_value(f32::NAN))
            .err()
            .unwrap();
        assert!(err.to_string().contains("pad_value"), "{err}");
    }

    #[test]
    fn augmented_asr_batches_do_not_depend_on_thread_count() {
        let (_dir, folder) = dataset(6);
        let run = |threads: usize| {
            let p = Workload::Asr
                .add_ops(
                    Pipeline::builder(folder.clone())
                        .batch_size(4)
                        .shuffle(true)
                        .seed(11)
                        .threads(threads),
                )
                .build()
                .unwrap();
            epoch_outputs(&p, 1)
        };
        let one = run(1);
        assert_eq!(one, run(2));
        assert_eq!(one, run(3));
        // The masks are drawn per sample from its own stream and did apply.
        let masked_zeros = one[0].0.chunks_exact(4).filter(|v| *v == [0u8; 4]).count();
        assert!(
            masked_zeros > 0,
            "SpecAugment masks filled some values with 0"
        );
    }

    #[test]
    fn operators_must_take_what_the_one_before_produces() {
        let (_dir, folder) = dataset(2);
        let err = Pipeline::builder(folder.clone())
            .decode_audio(DecodeAudio::default())
            .op(Normalize::imagenet())
            .build()
            .err()
            .expect("Normalize cannot take audio");
        let msg = err.to_string();
        assert!(
            msg.contains("Normalize (operator 1) takes an image but DecodeAudio produces audio"),
            "{msg}"
        );
        let err = Pipeline::builder(folder)
            .decode_audio(DecodeAudio::default())
            .op(AudioOp::Log { eps: 1e-6 })
            .build()
            .err()
            .expect("Log takes features");
        assert!(
            err.to_string().contains(
                "Log (operator 1) takes spectral features but DecodeAudio produces audio"
            ),
            "{err}"
        );
    }

    #[test]
    fn a_bad_audio_file_fails_naming_it_or_is_skipped_and_counted() {
        let (dir, _) = dataset(4);
        let bad = dir.path().join("class_000").join("broken.wav");
        std::fs::write(&bad, b"RIFF\x10\0\0\0WAVEnot really").unwrap();
        let folder = AudioFolder::open(dir.path()).unwrap();
        let build = |policy| {
            Workload::AsrVal
                .add_ops(Pipeline::builder(folder.clone()).batch_size(5).threads(2))
                .on_error(policy)
                .build()
                .unwrap()
        };
        let err = build(ErrorPolicy::Fail)
            .epoch(0)
            .unwrap()
            .find_map(|b| b.err())
            .expect("the broken file fails the epoch");
        let msg = err.to_string();
        assert!(
            msg.contains("broken.wav") && msg.contains("DecodeAudio"),
            "{msg}"
        );
        let p = build(ErrorPolicy::Skip);
        let kept: usize = p.epoch(0).unwrap().map(|b| b.unwrap().len()).sum();
        assert_eq!(kept, 4);
        assert_eq!(p.stats().skipped, 1);
    }

    /// A 16-bit mono 16 kHz WAV of `n` samples of a ramp.
    fn short_wav(n: usize) -> Vec<u8> {
        let data: Vec<u8> = (0..n)
            .flat_map(|i| ((i as i16) * 50).to_le_bytes())
            .collect();
        let mut w = Vec::new();
        w.extend_from_slice(b"RIFF");
        w.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
        w.extend_from_slice(b"WAVEfmt ");
        w.extend_from_slice(&16u32.to_le_bytes());
        w.extend_from_slice(&1u16.to_le_bytes()); // PCM
        w.extend_from_slice(&1u16.to_le_bytes()); // mono
        w.extend_from_slice(&16_000u32.to_le_bytes());
        w.extend_from_slice(&32_000u32.to_le_bytes());
        w.extend_from_slice(&2u16.to_le_bytes());
        w.extend_from_slice(&16u16.to_le_bytes());
        w.extend_from_slice(b"data");
        w.extend_from_slice(&(data.len() as u32).to_le_bytes());
        w.extend_from_slice(&data);
        w
    }

    /// asr (masks included) with its spectral chain on wgpu delivers the CPU pipeline's batches
    /// (same samples, lengths and masks; values within 5e-4, the kernels' stated tolerance), and
    /// a sample too short for the spectrogram fails naming it and the operator — or is skipped
    /// and counted — exactly as on the CPU.
    #[test]
    fn asr_on_wgpu_delivers_the_cpu_batches_and_names_a_bad_sample() {
        let (dir, _) = dataset(7);
        std::fs::write(
            dir.path().join("class_001").join("tiny.wav"),
            short_wav(100),
        )
        .unwrap();
        let folder = AudioFolder::open(dir.path()).unwrap();
        let build = |placement, policy| {
            Workload::Asr
                .add_ops(Pipeline::builder(folder.clone()).batch_size(3).threads(2))
                .placement(placement)
                .on_error(policy)
                .seed(11)
                .build()
                .unwrap()
        };
        let gpu = build(sluice::Placement::Wgpu, ErrorPolicy::Skip);
        if gpu.gpu_device().is_none() {
            eprintln!("skipped: {}", gpu.placement_reason());
            assert!(std::env::var_os("SLUICE_REQUIRE_WGPU").is_none());
            return;
        }
        let cpu = build(sluice::Placement::Cpu, ErrorPolicy::Skip);
        let (got, want) = (epoch_outputs(&gpu, 1), epoch_outputs(&cpu, 1));
        assert_eq!(got.len(), want.len());
        for ((g, gl, gi), (c, cl, ci)) in got.iter().zip(&want) {
            assert_eq!((gl, gi), (cl, ci), "lengths and samples");
            assert_eq!(g.len(), c.len());
            let worst = g
                .chunks_exact(4)
                .zip(c.chunks_exact(4))
                .map(|(a, b)| {
                    let a = f32::from_le_bytes(a.try_into().unwrap());
                    let b = f32::from_le_bytes(b.try_into().unwrap());
                    (a - b).abs()
                })
                .fold(0f32, f32::max);
            assert!(worst <= 5e-4, "max |gpu − cpu| {worst}");
        }
        assert_eq!((gpu.stats().skipped, cpu.stats().skipped), (1, 1));
        let err = build(sluice::Placement::Wgpu, ErrorPolicy::Fail)
            .epoch(0)
            .unwrap()
            .find_map(|b| b.err())
            .expect("the short file fails the epoch")
            .to_string();
        assert!(
            err.contains("tiny.wav") && err.contains("Spectrogram") && err.contains("reflect"),
            "{err}"
        );
    }

    #[test]
    fn transcripts_from_a_manifest_come_out_with_their_samples() {
        let (dir, folder) = dataset(6);
        // A NeMo-style manifest over the same files plus a broken one, each with its text.
        std::fs::write(dir.path().join("broken.wav"), b"RIFF\x10\0\0\0WAVEnope").unwrap();
        let mut lines = String::new();
        let mut want = Vec::new();
        for i in 0..folder.len() as u64 {
            let path = folder.origin(i);
            let text = format!("utterance {i}, said \"clearly\"");
            lines += &serde_json::json!({"audio_filepath": path, "text": text}).to_string();
            lines.push('\n');
            want.push(text);
        }
        lines += "{\"audio_filepath\": \"broken.wav\", \"text\": \"lost\"}\n";
        want.push("lost".into());
        let manifest = dir.path().join("train.jsonl");
        std::fs::write(&manifest, lines).unwrap();
        let source = sluice::source::open_audio_path(&manifest).unwrap();
        let p = Workload::AsrVal
            .add_ops(
                Pipeline::builder_shared(source)
                    .batch_size(3)
                    .threads(2)
                    .shuffle(true)
                    .seed(4),
            )
            .on_error(ErrorPolicy::Skip)
            .build()
            .unwrap();
        let mut seen = Vec::new();
        for batch in p.epoch(1).unwrap() {
            let batch = batch.unwrap();
            assert_eq!(batch.texts.len(), batch.len());
            for (j, &index) in batch.sample_indices.iter().enumerate() {
                assert_eq!(batch.texts[j], want[index as usize], "sample {index}");
                assert_eq!(batch.labels[j], -1, "a manifest without labels");
                seen.push(index);
            }
        }
        seen.sort();
        assert_eq!(
            seen,
            (0..6).collect::<Vec<u64>>(),
            "the broken file skipped"
        );
        // Folders have no transcripts: no texts in their batches.
        let plain = Workload::AsrVal
            .add_ops(Pipeline::builder(folder).batch_size(3))
            .build()
            .unwrap();
        assert!(plain.epoch(0).unwrap().all(|b| b.unwrap().texts.is_empty()));
    }
}

/// With a GPU asked for, the spectral chain (Spectrogram on) is the GPU suffix — or, without a
/// usable adapter, everything stays on the CPU with the reason; device batches asked for come
/// in CUDA memory with a CUDA device, else as host batches with the reason.
#[test]
fn a_gpu_placement_takes_the_spectral_chain_and_device_batches_need_cuda() {
    let dir = tempfile::tempdir().unwrap();
    let spec = sluice::gen::audio::AudioDatasetSpec {
        files: 2,
        classes: 1,
        seed: 1,
        max_seconds: 1.0,
    };
    sluice::gen::audio::write_audio_dataset(dir.path(), &spec, &|_| {}).unwrap();
    let folder = sluice::source::AudioFolder::open(dir.path()).unwrap();
    for (placement, device_batches) in [
        (sluice::Placement::Wgpu, false),
        (sluice::Placement::Cuda, true),
        (sluice::Placement::Auto, false),
    ] {
        let p = sluice::bench::Workload::AsrVal
            .add_ops(sluice::Pipeline::builder(folder.clone()).placement(placement))
            .device_batches(device_batches)
            .build()
            .unwrap();
        let reason = p.placement_reason();
        let cuda = sluice::backend::cuda::probe(0).is_ok();
        assert_eq!(
            p.device_batches(),
            device_batches && cuda,
            "{placement:?}: {reason}"
        );
        assert_eq!(
            reason.contains("device batches off"),
            device_batches && !cuda,
            "{placement:?}: {reason}"
        );
        assert_eq!(p.ops()[2].name(), "Spectrogram");
        if p.gpu_device().is_some() {
            assert_eq!(p.gpu_cut(), 2, "{placement:?}: {reason}");
            assert!(reason.contains("from Spectrogram on"), "{reason}");
        } else {
            assert_eq!(p.gpu_cut(), p.ops().len(), "{placement:?}: {reason}");
            assert!(
                reason.contains("GPU unavailable") || reason.contains("software rasterizer"),
                "{placement:?}: {reason}"
            );
        }
        let batches: Vec<_> = p.epoch(0).unwrap().map(|b| b.unwrap()).collect();
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].lengths.len(), 2);
        assert_eq!(batches[0].device().is_some(), p.device_batches());
    }
}
