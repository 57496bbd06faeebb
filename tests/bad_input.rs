//! Hostile and broken inputs: corrupt, truncated, empty and non-image files, and headers that
//! declare absurd sizes. Under `fail` the epoch stops with an error naming the sample and the
//! operator; under `skip` the sample is left out, counted and reported; never a panic or hang.

mod common;

use common::jpeg_samples;
use sluice::bench::Workload;
use sluice::ops::{DecodeImage, DecodeLimits};
use sluice::source::InMemory;
use sluice::tensor::Image;
use sluice::{ErrorPolicy, Pipeline};
use zune_core::bit_depth::BitDepth;
use zune_core::colorspace::ColorSpace;
use zune_core::options::EncoderOptions;

fn png(width: usize, height: usize, colorspace: ColorSpace, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    zune_png::PngEncoder::new(
        data,
        EncoderOptions::new(width, height, colorspace, BitDepth::Eight),
    )
    .encode(&mut out)
    .unwrap();
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// A valid PNG whose IHDR (CRC fixed up) declares `width`×`height`.
fn png_declaring(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = png(2, 2, ColorSpace::RGB, &[7; 12]);
    // Signature (8) + length (4) + "IHDR" (4), then width and height, big-endian.
    bytes[16..20].copy_from_slice(&width.to_be_bytes());
    bytes[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    bytes
}

/// A valid JPEG whose SOF0 declares `width`×`height`.
fn jpeg_declaring(width: u16, height: u16) -> Vec<u8> {
    let mut bytes = jpeg_samples(1, 3).remove(0).0;
    let sof = bytes
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("baseline JPEG has SOF0");
    // FF C0, length (2), precision (1), height (2), width (2).
    bytes[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    bytes[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    bytes
}

/// Each case: (name, bytes, expected to decode?).
fn corpus() -> Vec<(&'static str, Vec<u8>, bool)> {
    let good = jpeg_samples(2, 11);
    let jpeg = good[0].0.clone();
    let mut corrupt = jpeg.clone();
    let mid = corrupt.len() / 2;
    for b in &mut corrupt[mid..mid + 64] {
        *b = 0xFF; // a run of marker prefixes inside entropy-coded data
    }
    vec![
        ("good jpeg", jpeg.clone(), true),
        ("empty", Vec::new(), false),
        ("truncated jpeg", jpeg[..jpeg.len() / 3].to_vec(), false),
        ("jpeg header only", jpeg[..200].to_vec(), false),
        ("corrupt jpeg", corrupt, false),
        ("text file", b"path,label\nnot an image\n".to_vec(), false),
        (
            "random bytes",
            (0..5000u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                .collect(),
            false,
        ),
        ("jpeg 65535x65535", jpeg_declaring(65535, 65535), false),
        ("png 100000x100000", png_declaring(100_000, 100_000), false),
        ("png 0x5", png_declaring(0, 5), false),
        (
            "png truncated",
            png(4, 4, ColorSpace::RGB, &[9; 48])[..40].to_vec(),
            false,
        ),
        (
            "png gray",
            png(3, 2, ColorSpace::Luma, &[1, 2, 3, 4, 5, 6]),
            true,
        ),
        (
            "png rgba",
            png(1, 1, ColorSpace::RGBA, &[10, 20, 30, 40]),
            true,
        ),
        ("good jpeg 2", good[1].0.clone(), true),
    ]
}

#[test]
fn decoder_rejects_every_bad_file_and_accepts_the_good_ones() {
    let decoder = DecodeImage::default();
    for (name, bytes, ok) in corpus() {
        let mut out = Image::default();
        let result = decoder.decode(&bytes, &mut out);
        assert_eq!(result.is_ok(), ok, "{name}: {result:?}");
        if let Err(message) = result {
            assert!(!message.is_empty());
        }
    }
}

#[test]
fn png_colour_types_become_rgb() {
    let decoder = DecodeImage::default();
    let mut out = Image::default();
    decoder
        .decode(&png(3, 2, ColorSpace::Luma, &[1, 2, 3, 4, 5, 6]), &mut out)
        .unwrap();
    assert_eq!((out.width, out.height), (3, 2));
    assert_eq!(out.data[..6], [1, 1, 1, 2, 2, 2]);
    decoder
        .decode(&png(1, 1, ColorSpace::RGBA, &[10, 20, 30, 40]), &mut out)
        .unwrap();
    assert_eq!(out.data, [10, 20, 30]);
}

#[test]
fn size_limits_are_configurable_and_checked_before_decoding() {
    let jpeg = jpeg_samples(1, 3).remove(0).0;
    let strict = DecodeImage::new(DecodeLimits {
        max_pixels: 1000,
        max_side: 16384,
    });
    let err = strict.decode(&jpeg, &mut Image::default()).unwrap_err();
    assert!(err.contains("over the limit"), "{err}");
    let err = DecodeImage::default()
        .decode(&png_declaring(100_000, 100_000), &mut Image::default())
        .unwrap_err();
    assert!(
        err.contains("100000×100000") && err.contains("over the limit"),
        "{err}"
    );
    // (libjpeg itself refuses sides over 65500 while reading the header.)
    let err = DecodeImage::default()
        .decode(&jpeg_declaring(65000, 65000), &mut Image::default())
        .unwrap_err();
    assert!(
        err.contains("65000×65000") && err.contains("over the limit"),
        "{err}"
    );
}

fn pipeline(policy: ErrorPolicy, threads: usize) -> Pipeline {
    let samples = corpus()
        .into_iter()
        .enumerate()
        .map(|(i, (_, bytes, _))| (bytes, i as i64))
        .collect();
    simclr_over(samples, policy, threads, 4, false)
}

fn simclr_over(
    samples: Vec<(Vec<u8>, i64)>,
    policy: ErrorPolicy,
    threads: usize,
    batch: usize,
    drop_last: bool,
) -> Pipeline {
    Workload::Simclr
        .add_ops(Pipeline::builder(InMemory::new(samples)))
        .batch_size(batch)
        .drop_last(drop_last)
        .threads(threads)
        .on_error(policy)
        .build()
        .unwrap()
}

/// Label and bytes of every sample, by dataset index, from a run of the corpus with each bad
/// file replaced by a good one (so nothing is skipped; draws depend only on the index).
fn healed_reference() -> std::collections::HashMap<u64, (i64, Vec<u8>)> {
    let replacement = jpeg_samples(1, 3).remove(0).0;
    let healed = corpus()
        .into_iter()
        .enumerate()
        .map(|(i, (_, bytes, ok))| (if ok { bytes } else { replacement.clone() }, i as i64))
        .collect();
    let mut want = std::collections::HashMap::new();
    for batch in simclr_over(healed, ErrorPolicy::Fail, 2, 4, false)
        .epoch(0)
        .unwrap()
    {
        let batch = batch.unwrap();
        for i in 0..batch.len() {
            let entry = (batch.labels[i], batch.sample(i).to_vec());
            want.insert(batch.sample_indices[i], entry);
        }
    }
    want
}

#[test]
fn kept_samples_keep_their_bytes_and_labels_whatever_the_batching_and_skips() {
    let want = healed_reference();
    let cases = corpus();
    let good: Vec<u64> = (0..cases.len() as u64)
        .filter(|&i| cases[i as usize].2)
        .collect();
    let samples: Vec<_> = cases
        .into_iter()
        .enumerate()
        .map(|(i, (_, bytes, _))| (bytes, i as i64))
        .collect();
    for (batch_size, drop_last, threads) in [
        (4, false, 1),
        (4, false, 3),
        (1, false, 2),
        (3, true, 2),
        (5, false, 2),
        (14, false, 2),
    ] {
        let p = simclr_over(
            samples.clone(),
            ErrorPolicy::Skip,
            threads,
            batch_size,
            drop_last,
        );
        let mut kept = Vec::new();
        for batch in p.epoch(0).unwrap() {
            let batch = batch.unwrap();
            assert_eq!(batch.labels.len(), batch.len());
            assert_eq!(batch.sample_indices.len(), batch.len());
            for i in 0..batch.len() {
                let index = batch.sample_indices[i];
                let (label, bytes) = &want[&index];
                assert_eq!(batch.labels[i], *label, "sample {index}'s label");
                assert!(
                    batch.sample(i) == bytes.as_slice(),
                    "batch {batch_size} drop_last {drop_last}: sample {index}'s bytes are not \
                     its own (kept samples moved away from their labels)"
                );
                kept.push(index);
            }
        }
        let whole = samples.len() / batch_size * batch_size;
        let expected: Vec<u64> = good
            .iter()
            .copied()
            .filter(|&i| !drop_last || (i as usize) < whole)
            .collect();
        assert_eq!(kept, expected, "batch {batch_size} drop_last {drop_last}");
    }
}

#[test]
fn fail_policy_stops_with_the_sample_and_operator_named() {
    let mut it = pipeline(ErrorPolicy::Fail, 2).epoch(0).unwrap();
    let err = it
        .next()
        .unwrap()
        .expect_err("batch 0 holds the empty file");
    let text = err.to_string();
    assert!(text.contains("sample #1 (memory[1])"), "{text}");
    assert!(text.contains("DecodeImage"), "{text}");
    assert!(text.contains("empty file"), "{text}");
    assert!(it.next().is_none(), "the epoch ends after an error");
}

#[test]
fn skip_policy_drops_counts_and_reports_each_bad_sample() {
    let cases = corpus();
    let want_good: Vec<u64> = (0..cases.len() as u64)
        .filter(|&i| cases[i as usize].2)
        .collect();
    let want_bad: Vec<u64> = (0..cases.len() as u64)
        .filter(|&i| !cases[i as usize].2)
        .collect();
    for threads in [1, 3] {
        let p = pipeline(ErrorPolicy::Skip, threads);
        let (mut good, mut bad) = (Vec::new(), Vec::new());
        for batch in p.epoch(0).unwrap() {
            let batch = batch.expect("skip policy never fails the epoch");
            let dense = batch.dense().unwrap();
            assert_eq!(dense.shape[0], batch.len());
            assert_eq!(batch.labels.len(), batch.len());
            good.extend(batch.sample_indices.clone());
            for e in &batch.skipped {
                assert_eq!(e.operator, "DecodeImage", "{e}");
                bad.push(e.sample.index);
            }
        }
        assert_eq!(good, want_good);
        assert_eq!(bad, want_bad);
        assert_eq!(p.stats().skipped, want_bad.len() as u64);
    }
}

/// A source whose read panics on one sample (a bug in user code, say).
struct PanickingSource(InMemory, u64);

impl sluice::source::Source for PanickingSource {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn label(&self, index: u64) -> i64 {
        self.0.label(index)
    }
    fn origin(&self, index: u64) -> String {
        self.0.origin(index)
    }
    fn read(&self, index: u64, buf: &mut Vec<u8>) -> std::io::Result<()> {
        assert!(index != self.1, "the reader broke on sample {index}");
        self.0.read(index, buf)
    }
    fn describe(&self) -> String {
        "panicking source".into()
    }
}

#[test]
fn a_panic_is_reported_with_the_sample_and_the_stage_it_happened_in() {
    let build = |policy| {
        let source = PanickingSource(InMemory::new(jpeg_samples(6, 2)), 3);
        Workload::Rn50Train
            .add_ops(Pipeline::builder(source))
            .batch_size(2)
            .threads(2)
            .on_error(policy)
            .build()
            .unwrap()
    };
    let err = build(ErrorPolicy::Fail)
        .epoch(0)
        .unwrap()
        .find_map(|b| b.err())
        .expect("sample 3 fails")
        .to_string();
    assert!(
        err.contains("sample #3") && err.contains("`read`") && err.contains("broke on sample 3"),
        "{err}"
    );
    let p = build(ErrorPolicy::Skip);
    let skipped: Vec<_> = p
        .epoch(0)
        .unwrap()
        .flat_map(|b| b.unwrap().skipped)
        .collect();
    assert_eq!(skipped.len(), 1);
    assert_eq!(
        (skipped[0].sample.index, skipped[0].operator.as_str()),
        (3, "read")
    );
}

#[test]
fn missing_file_names_the_path_and_the_read_stage() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("list.csv");
    std::fs::write(&csv, "path,label\ngone.jpg,0\n").unwrap();
    let source = sluice::source::FileList::open(&csv).unwrap();
    let p = Pipeline::builder(source).build().unwrap();
    let err = p.epoch(0).unwrap().next().unwrap().unwrap_err().to_string();
    assert!(err.contains("gone.jpg") && err.contains("`read`"), "{err}");
}

#[test]
fn tiny_images_pass_through_every_workload() {
    let samples = vec![
        (png(1, 1, ColorSpace::RGB, &[1, 2, 3]), 0),
        (png(2, 3, ColorSpace::RGB, &[50; 18]), 1),
        (png(7, 1, ColorSpace::Luma, &[9; 7]), 2),
    ];
    for workload in [Workload::Rn50Train, Workload::Rn50Val, Workload::Simclr] {
        let p = workload
            .add_ops(Pipeline::builder(InMemory::new(samples.clone())))
            .batch_size(3)
            .build()
            .unwrap();
        let batch = p.epoch(0).unwrap().next().unwrap().unwrap();
        assert_eq!(batch.len(), 3, "{workload:?}");
        let values = batch.dense().unwrap().to_f32_vec();
        assert!(values.iter().all(|v| v.is_finite()), "{workload:?}");
        if workload == Workload::Simclr {
            continue; // colour jitter moves the values; finite is all that is fixed
        }
        // Each image is one flat colour, so every crop and resize keeps it exactly: each
        // channel plane is that colour, normalized.
        let (scale, bias) = sluice::ops::Normalize::imagenet().scale_bias();
        let plane = 224 * 224;
        for (s, rgb) in [[1u8, 2, 3], [50, 50, 50], [9, 9, 9]].iter().enumerate() {
            for c in 0..3 {
                let want = f32::from(rgb[c]) * scale[c] + bias[c];
                let start = (s * 3 + c) * plane;
                let got = &values[start..start + plane];
                assert!(
                    got.iter().all(|&v| v == want),
                    "{workload:?}: sample {s} channel {c}: want {want}, got e.g. {}",
                    got.iter().find(|&&v| v != want).unwrap()
                );
            }
        }
    }
}

/// JPEGs of every structure the decoder has paths for: baseline 4:2:0 / 4:2:2 / 4:4:4,
/// progressive, restart intervals, grayscale, CMYK.
fn fuzz_originals() -> Vec<Vec<u8>> {
    use jpeg_encoder::{ColorType, Encoder, SamplingFactor};
    let image = sluice::gen::render_image(5, 1);
    let (w, h) = (96u16, 64u16);
    let rgb: Vec<u8> = (0..h as usize)
        .flat_map(|y| image.data[y * image.width as usize * 3..][..w as usize * 3].to_vec())
        .collect();
    let gray: Vec<u8> = rgb.chunks(3).map(|p| p[1]).collect();
    let cmyk: Vec<u8> = rgb
        .chunks(3)
        .flat_map(|p| [p[0], p[1], p[2], 200])
        .collect();
    let encode = |data: &[u8], color, sampling, progressive, restart| {
        let mut out = Vec::new();
        let mut e = Encoder::new(&mut out, 85);
        e.set_sampling_factor(sampling);
        e.set_progressive(progressive);
        e.set_restart_interval(restart);
        e.encode(data, w, h, color).unwrap();
        out
    };
    vec![
        jpeg_samples(1, 5).remove(0).0,
        encode(&rgb, ColorType::Rgb, SamplingFactor::R_4_2_2, false, 2),
        encode(&rgb, ColorType::Rgb, SamplingFactor::R_4_2_0, true, 0),
        encode(&rgb, ColorType::Rgb, SamplingFactor::R_4_4_4, true, 3),
        encode(&gray, ColorType::Luma, SamplingFactor::R_4_4_4, false, 0),
        encode(&cmyk, ColorType::Cmyk, SamplingFactor::R_4_4_4, false, 0),
        png(16, 9, ColorSpace::RGB, &[77; 16 * 9 * 3]),
    ]
}

/// Mutated files (bit flips, truncation, overwritten runs) decoded whole and by window: an error
/// or an image, never a panic (caught or not), a hang or an allocation past the limits.
/// `SLUICE_FUZZ_CASES` sets the number of files (default 2000; docs/PERFORMANCE.md records a
/// 100 000-file run).
#[test]
fn randomly_mutated_files_never_panic_hang_or_overallocate() {
    use sluice::ops::Rect;
    use sluice::rng::{SampleRng, Uniform};
    let seed = common::test_seed(); // SLUICE_TEST_SEED replays a failure
    let cases: u64 = std::env::var("SLUICE_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000);
    let originals = fuzz_originals();
    let decoder = DecodeImage::new(DecodeLimits {
        max_pixels: 4 << 20,
        max_side: 8192,
    });
    let mut out = Image::default();
    let hang = common::watchdog(
        &format!("decoding the mutated files of seed {seed}"),
        std::time::Duration::from_secs(600 + cases / 100),
    );
    let (mut decoded, mut slowest) = (0u64, std::time::Duration::ZERO);
    for case in 0..cases {
        let mut rng = SampleRng::new(seed, 0, case, 0);
        let mut bytes = originals[case as usize % originals.len()].clone();
        for _ in 0..=rng.below(2) {
            match rng.below(3) {
                // Flip a few random bits (header or data).
                0 => {
                    for _ in 0..=rng.below(8) {
                        let i = rng.below(bytes.len() as u64) as usize;
                        bytes[i] ^= 1 << rng.below(8);
                    }
                }
                // Cut the file short.
                1 => bytes.truncate(1 + rng.below(bytes.len() as u64) as usize),
                // Overwrite a run with one value.
                _ => {
                    let start = rng.below(bytes.len() as u64) as usize;
                    let end = (start + 1 + rng.below(64) as usize).min(bytes.len());
                    let v = rng.below(256) as u8;
                    bytes[start..end].fill(v);
                }
            }
        }
        // Either outcome is fine; a panic, a hang or a huge allocation is not.
        let by_window = rng.bernoulli(0.5);
        let (l, t) = (rng.below(64) as u32, rng.below(48) as u32);
        let started = std::time::Instant::now();
        let result = if by_window {
            let want = |w: u32, h: u32| {
                Some(Rect {
                    left: l.min(w - 1),
                    top: t.min(h - 1),
                    width: (w - l.min(w - 1)).min(17),
                    height: (h - t.min(h - 1)).min(9),
                })
            };
            decoder.decode_window(&bytes, &mut out, want).map(|_| ())
        } else {
            decoder.decode(&bytes, &mut out)
        };
        slowest = slowest.max(started.elapsed());
        match result {
            Ok(()) => {
                decoded += 1;
                assert!(
                    out.data.len() <= 3 * (4 << 20),
                    "case {case}: decoded past the limit"
                );
            }
            Err(message) => assert!(
                !message.contains("panicked"),
                "case {case} (seed {seed}): {message}"
            ),
        }
    }
    drop(hang);
    eprintln!(
        "{cases} mutated files: {decoded} decoded, {} refused; slowest {slowest:?}",
        cases - decoded
    );
}
