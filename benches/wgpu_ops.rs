//! CPU vs wgpu per operator, and the fused crop→resize→flip→normalize kernel, on a batch of 32:
//! `cargo bench --bench wgpu_ops`. The CPU side runs the batch on all cores (rayon); the wgpu
//! side is end to end for the batch (upload, kernels, readback), which is what placement pays.
//! Without an adapter it prints "skipped: no wgpu adapter". On lavapipe (CI, this machine) the
//! numbers are correctness evidence, not GPU speed: lavapipe runs the kernels on the CPU.

use criterion::{criterion_group, criterion_main, Criterion};
use rayon::prelude::*;
use sluice::backend::wgpu::{ImageStage, TensorWrite, WgpuContext};
use sluice::gen::render_image;
use sluice::ops::{
    ColorJitter, CropBox, GaussianBlur, Normalize, Op, OpParams, RandomGrayscale,
    RandomHorizontalFlip, RandomResizedCrop, Scratch,
};
use sluice::rng::SampleRng;
use sluice::tensor::Image;
use std::time::Duration;

const BATCH: usize = 32;

fn photos() -> Vec<Image> {
    (0..BATCH as u64).map(|i| render_image(0, i)).collect()
}

fn resized(images: &[Image]) -> Vec<Image> {
    let mut scratch = Scratch::default();
    images
        .iter()
        .map(|src| {
            let mut out = Image::default();
            let crop = CropBox::whole(src.width, src.height, 224, 224);
            scratch.resizer.resize(src, &crop, &mut out);
            out
        })
        .collect()
}

/// Each sample's parameters for `op`, drawn as the pipeline draws them.
fn draws(op: &Op, images: &[Image]) -> Vec<OpParams> {
    images
        .iter()
        .enumerate()
        .map(|(i, im)| op.draw(&mut SampleRng::new(1, 0, i as u64, 1), im.width, im.height))
        .collect()
}

fn cpu_batch(op: &Op, images: &[Image], params: &[OpParams]) -> Vec<Image> {
    images
        .par_iter()
        .zip(params)
        .map_init(Scratch::default, |scratch, (im, p)| {
            let mut out = im.clone();
            op.apply_image(p, &mut out, scratch);
            out
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let ctx = match WgpuContext::new() {
        Ok(ctx) => ctx,
        Err(reason) => {
            eprintln!("skipped: {reason}");
            return;
        }
    };
    eprintln!("wgpu adapter: {}", ctx.describe());
    let photos = photos();
    let small = resized(&photos);
    let mut g = c.benchmark_group(format!("batch{BATCH}"));
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));

    let ops: Vec<(&str, Op, &[Image])> = vec![
        (
            "RandomResizedCrop",
            RandomResizedCrop::new(224).into(),
            &photos,
        ),
        (
            "RandomHorizontalFlip",
            RandomHorizontalFlip::new(1.0).into(),
            &small,
        ),
        (
            "ColorJitter",
            ColorJitter::new(0.4, 0.4, 0.4, 0.1).into(),
            &small,
        ),
        ("RandomGrayscale", RandomGrayscale::new(1.0).into(), &small),
        (
            "GaussianBlur",
            GaussianBlur::new(23, (0.1, 2.0)).into(),
            &small,
        ),
    ];
    for (name, op, images) in ops {
        let params = draws(&op, images);
        g.bench_function(format!("{name}/cpu"), |b| {
            b.iter(|| cpu_batch(&op, images, &params))
        });
        let per_sample: Vec<Vec<OpParams>> = params.iter().map(|p| vec![*p]).collect();
        let (stages, _) = sluice::exec::stages_for(std::slice::from_ref(&op), &per_sample);
        g.bench_function(format!("{name}/wgpu"), |b| {
            b.iter(|| ctx.run_to_images(images, &stages).unwrap())
        });
    }

    // Normalize alone (f32 CHW), and the fused crop → resize → flip → normalize.
    let norm = Normalize::imagenet();
    let write = TensorWrite::for_op(&Op::Normalize(norm.clone())).unwrap();
    let per = 224 * 224 * 3 * 4;
    let mut out = vec![0u8; per * BATCH];
    g.bench_function("Normalize/cpu", |b| {
        b.iter(|| {
            out.par_chunks_mut(per)
                .zip(&small)
                .for_each(|(o, im)| norm.write(im, false, o))
        })
    });
    g.bench_function("Normalize/wgpu", |b| {
        b.iter(|| ctx.run_to_tensor(&small, &[], &write, &mut out).unwrap())
    });
    let rrc = RandomResizedCrop::new(224);
    let boxes: Vec<CropBox> = draws(&Op::from(rrc.clone()), &photos)
        .into_iter()
        .map(|p| match p {
            OpParams::Crop(b) => b,
            _ => unreachable!(),
        })
        .collect();
    let flips: Vec<bool> = (0..BATCH).map(|i| i % 2 == 0).collect();
    g.bench_function("RRC+flip+Normalize/cpu", |b| {
        b.iter(|| {
            out.par_chunks_mut(per)
                .zip(&photos)
                .zip(&boxes)
                .zip(&flips)
                .for_each_init(Scratch::default, |scratch, (((o, im), crop), &flip)| {
                    let mut img = Image::default();
                    scratch.resizer.resize(im, crop, &mut img);
                    norm.write(&img, flip, o);
                })
        })
    });
    let stages = [
        ImageStage::Resample(boxes.clone()),
        ImageStage::Flip(flips.clone()),
    ];
    g.bench_function("RRC+flip+Normalize/wgpu fused", |b| {
        b.iter(|| {
            ctx.run_to_tensor(&photos, &stages, &write, &mut out)
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
