//! JPEG decode, side by side on the same files, one thread:
//! - zune-jpeg (pure Rust, sluice's decoder before libjpeg-turbo), strict mode, full decode;
//! - `DecodeImage` (libjpeg-turbo 3.1), full decode;
//! - `DecodeImage` by window: only what rn50-train's RandomResizedCrop 224 reads (crops drawn as
//!   the pipeline draws them, seed 0, epoch 0), the crop-aware decode;
//! - the same window at the DCT-domain scale `--allow-approx` picks (1/2–1/8 where the crop
//!   shrinks ≥ 2×; unscaled otherwise).
//!
//! `cargo bench --bench decoders`. Inputs: the first 32 images of the generated dataset (seed 0,
//! long side 200–600 px) and, as `large`, 8 generated photos with a ~3000-px long side.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice::exec::CropDecode;
use sluice::gen::{generate_sample, DatasetSpec};
use sluice::ops::{DecodeImage, Op, RandomResizedCrop, Region};
use sluice::rng::SampleRng;
use sluice::tensor::Image;
use std::hint::black_box;
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;

fn dataset(images: usize, long_side: Option<u32>) -> Vec<Vec<u8>> {
    let spec = DatasetSpec {
        images,
        long_side,
        ..DatasetSpec::default()
    };
    (0..images as u64)
        .map(|i| generate_sample(&spec, i).0)
        .collect()
}

/// The rectangle rn50-train's crop reads from a `width`×`height` image `index` (seed 0, epoch 0,
/// the crop's stream id 1), as the executor computes it.
/// With `approx`, at the DCT-domain scale the pipeline picks under `--allow-approx`.
fn crop_region(index: u64, width: u32, height: u32, approx: bool) -> Option<Region> {
    let ops = [Op::RandomResizedCrop(RandomResizedCrop::new(224))];
    let rng = || SampleRng::new(0, 0, index, 1);
    let plan = CropDecode::RandomCrop.plan(&ops, rng, (width, height), approx)?;
    Some(plan.region)
}

fn bench_set(c: &mut Criterion, name: &str, files: &[Vec<u8>]) {
    let mut g = c.benchmark_group(format!("decode/{name}"));
    g.throughput(Throughput::Elements(files.len() as u64));
    g.sample_size(20);

    let options = DecoderOptions::default()
        .set_max_width(1 << 16)
        .set_max_height(1 << 16)
        .set_strict_mode(true)
        .jpeg_set_out_colorspace(ColorSpace::RGB);
    let mut pixels = Vec::new();
    g.bench_function("zune-jpeg full", |b| {
        b.iter(|| {
            for f in files {
                let mut d = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(f), options);
                d.decode_headers().unwrap();
                let info = d.info().unwrap();
                pixels.resize(info.width as usize * info.height as usize * 3, 0);
                d.decode_into(black_box(&mut pixels)).unwrap();
            }
        })
    });

    let decoder = DecodeImage::default();
    let mut out = Image::default();
    g.bench_function("libjpeg-turbo full", |b| {
        b.iter(|| {
            for f in files {
                decoder.decode(black_box(f), &mut out).unwrap();
            }
        })
    });
    g.bench_function("libjpeg-turbo window (rn50-train crop)", |b| {
        b.iter(|| {
            for (i, f) in files.iter().enumerate() {
                let want = |w, h| crop_region(i as u64, w, h, false);
                decoder.decode_region(black_box(f), &mut out, want).unwrap();
            }
        })
    });
    g.bench_function("libjpeg-turbo scaled window (--allow-approx)", |b| {
        b.iter(|| {
            for (i, f) in files.iter().enumerate() {
                let want = |w, h| crop_region(i as u64, w, h, true);
                decoder.decode_region(black_box(f), &mut out, want).unwrap();
            }
        })
    });
    g.finish();
}

fn bench_decoders(c: &mut Criterion) {
    bench_set(c, "imagenet-size", &dataset(32, None));
    bench_set(c, "large", &dataset(8, Some(3000)));
}

criterion_group!(benches, bench_decoders);
criterion_main!(benches);
