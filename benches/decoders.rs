//! JPEG decoder choice: zune-jpeg (pure Rust, what `DecodeImage` uses) against libjpeg-turbo
//! through the `turbojpeg` crate, full size and with DCT-domain 1/2 scaling.
//!
//! zune-jpeg only: `cargo bench --bench decoders`
//! both (needs libturbojpeg0-dev): `cargo bench --bench decoders --features turbojpeg`
//! Input: the first 32 images of the generated benchmark dataset (seed 0), as `sluice bench`
//! reads them.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice::gen::{generate_sample, DatasetSpec};
use sluice::ops::DecodeImage;
use sluice::tensor::Image;
use std::hint::black_box;

const IMAGES: usize = 32;

fn dataset() -> Vec<Vec<u8>> {
    let spec = DatasetSpec::default();
    (0..IMAGES as u64)
        .map(|i| generate_sample(&spec, i).0)
        .collect()
}

fn bench_decoders(c: &mut Criterion) {
    let files = dataset();
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(IMAGES as u64));

    let decoder = DecodeImage::default();
    let mut out = Image::default();
    g.bench_function("zune-jpeg", |b| {
        b.iter(|| {
            for f in &files {
                decoder.decode(black_box(f), &mut out).unwrap();
            }
        })
    });

    #[cfg(feature = "turbojpeg")]
    {
        let mut tj = turbojpeg::Decompressor::new().unwrap();
        let mut pixels = Vec::new();
        for (name, divisor) in [("libjpeg-turbo", 1), ("libjpeg-turbo 1/2 DCT-scaled", 2)] {
            g.bench_function(name, |b| {
                b.iter(|| {
                    for f in &files {
                        let header = tj.read_header(black_box(f)).unwrap();
                        // tjDecompress2 picks the DCT scaling factor that fits the output size.
                        let (w, h) = (
                            header.width.div_ceil(divisor),
                            header.height.div_ceil(divisor),
                        );
                        pixels.resize(w * h * 3, 0);
                        let image = turbojpeg::Image {
                            pixels: pixels.as_mut_slice(),
                            width: w,
                            pitch: w * 3,
                            height: h,
                            format: turbojpeg::PixelFormat::RGB,
                        };
                        tj.decompress(f, image).unwrap();
                    }
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench_decoders);
criterion_main!(benches);
