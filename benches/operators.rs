//! Per-operator CPU cost on one image: `cargo bench --bench operators`.
//! Inputs come from the synthetic dataset generator (a decoded photo-like JPEG).

use criterion::{criterion_group, criterion_main, Criterion};
use sluice::gen::{encode_jpeg, render_image};
use sluice::ops::{
    adjust_brightness, adjust_contrast, adjust_hue, adjust_saturation, CenterCrop, ColorJitter,
    CropBox, DecodeImage, GaussianBlur, Normalize, Op, OpParams, RandomGrayscale,
    RandomResizedCrop, Resize, Scratch,
};
use sluice::rng::SampleRng;
use sluice::tensor::Image;
use std::hint::black_box;

fn photo(width: u32, height: u32) -> Image {
    let mut scratch = Scratch::default();
    let src = render_image(0, 1);
    let mut out = Image::default();
    scratch.resizer.resize(
        &src,
        &CropBox::whole(src.width, src.height, width, height),
        &mut out,
    );
    out
}

fn bench_decode(c: &mut Criterion) {
    let image = render_image(0, 3);
    let jpeg = encode_jpeg(&image, 90);
    let decoder = DecodeImage::default();
    let mut out = Image::default();
    c.bench_function(
        &format!("decode/jpeg {}x{} q90", image.width, image.height),
        |b| b.iter(|| decoder.decode(black_box(&jpeg), &mut out).unwrap()),
    );
}

fn bench_ops(c: &mut Criterion) {
    let src = render_image(0, 1);
    let img224 = photo(224, 224);
    let mut scratch = Scratch::default();
    let mut g = c.benchmark_group("op");
    let mut run = |name: &str, op: Op, input: &Image, params: OpParams| {
        g.bench_function(name, |b| {
            let mut img = input.clone();
            b.iter(|| {
                img.clone_from(input);
                op.apply_image(&params, &mut img, &mut scratch);
            })
        });
    };
    let rrc = RandomResizedCrop::new(224);
    let crop = rrc.draw(&mut SampleRng::new(0, 0, 0, 1), src.width, src.height);
    run("RandomResizedCrop", rrc.into(), &src, OpParams::Crop(crop));
    let resize = Resize::new(256);
    let whole = resize.crop_box(src.width, src.height);
    run("Resize 256", resize.into(), &src, OpParams::Crop(whole));
    run(
        "CenterCrop 224",
        CenterCrop::new(224).into(),
        &photo(256, 341),
        OpParams::None,
    );
    let jitter = ColorJitter::new(0.4, 0.4, 0.4, 0.1);
    let mut params = jitter.draw(&mut SampleRng::new(0, 0, 0, 2));
    params.apply = true;
    run(
        "ColorJitter (all four)",
        jitter.into(),
        &img224,
        OpParams::Jitter(params),
    );
    run(
        "RandomGrayscale (applied)",
        RandomGrayscale::new(1.0).into(),
        &img224,
        OpParams::Apply(true),
    );
    for sigma in [0.5f32, 2.0] {
        run(
            &format!("GaussianBlur k23 sigma {sigma}"),
            GaussianBlur::new(23, (0.1, 2.0)).into(),
            &img224,
            OpParams::Blur(Some(sigma)),
        );
    }
    let normalize = Normalize::imagenet();
    let mut out = vec![0u8; 224 * 224 * 3 * 4];
    g.bench_function("Normalize f32 CHW", |b| {
        b.iter(|| normalize.write(black_box(&img224), false, &mut out))
    });
    g.bench_function("Flip+Normalize f32 CHW (fused)", |b| {
        b.iter(|| normalize.write(black_box(&img224), true, &mut out))
    });
    g.finish();

    let mut g = c.benchmark_group("jitter");
    let mut img = img224.clone();
    let mut each = |name: &str, f: &dyn Fn(&mut Image)| {
        g.bench_function(name, |b| {
            b.iter(|| {
                img.clone_from(&img224);
                f(&mut img)
            })
        });
    };
    each("brightness", &|i| adjust_brightness(i, 1.2));
    each("contrast", &|i| adjust_contrast(i, 1.2));
    each("saturation", &|i| adjust_saturation(i, 1.2));
    each("hue", &|i| adjust_hue(i, 0.05));
    g.finish();
}

criterion_group!(benches, bench_decode, bench_ops);
criterion_main!(benches);
