//! Approximate decode (`allow_approx`): a leading crop that shrinks the image ≥ 2× reads a JPEG
//! decoded at 1/2, 1/4 or 1/8 scale by the IDCT. It must run (counted), stay deterministic
//! across thread counts, leave images it cannot scale (PNG, small crops) exactly as before, and
//! stay close to the exact output: the bounds below are the documented difference
//! (docs/PERFORMANCE.md), with headroom.

mod common;

use sluice::gen::{encode_jpeg, generate_sample, render_image, DatasetSpec};
use sluice::ops::{CenterCrop, DecodeImage, RandomHorizontalFlip, RandomResizedCrop, Resize};
use sluice::rng::Uniform;
use sluice::source::InMemory;
use sluice::tensor::Image;
use sluice::{Pipeline, PipelineBuilder};

/// Camera-like photos scaled down for test time (~1200-px long side): the generator's smooth
/// scenes with sharp detail drawn over them (edges, fine stripes, noise), where a misplaced
/// crop or a wrong filter shows.
fn large_photos(n: usize) -> InMemory {
    let spec = DatasetSpec {
        images: n,
        long_side: Some(1200),
        ..DatasetSpec::default()
    };
    let mut rng = common::rng(common::test_seed(), 3);
    InMemory::new(
        (0..n as u64)
            .map(|i| {
                let (bytes, label) = generate_sample(&spec, i);
                let mut image = Image::default();
                DecodeImage::default().decode(&bytes, &mut image).unwrap();
                let (w, period) = (image.width as usize, 3 + rng.below(9) as usize);
                for (k, p) in image.data.chunks_exact_mut(3).enumerate() {
                    let (x, y) = (k % w, k / w);
                    let stripe = (x / period + y / (period + 2)) % 2 == 0;
                    let grain = (rng.next_u32() % 17) as u8;
                    for c in p.iter_mut() {
                        *c = if stripe { c.saturating_add(60) } else { *c / 2 } ^ grain;
                    }
                }
                (encode_jpeg(&image, 90), label as i64)
            })
            .collect(),
    )
}

/// ImageNet-size photos whose short side is under 512 px: Resize 256 shrinks them < 2×.
fn small_photos(n: usize) -> InMemory {
    InMemory::new(
        (0..)
            .map(|i| render_image(7, i))
            .filter(|image| image.width.min(image.height) < 512)
            .take(n)
            .map(|image| (encode_jpeg(&image, 85), 0))
            .collect(),
    )
}

/// rn50-train's and rn50-val's geometry with u8 output, so differences read in pixel levels.
/// Appends a workload's operators.
type AddOps = fn(PipelineBuilder) -> PipelineBuilder;

fn crops() -> [(&'static str, AddOps); 2] {
    [
        ("train", |b| {
            b.op(RandomResizedCrop::new(224))
                .op(RandomHorizontalFlip::new(0.5))
        }),
        ("val", |b| b.op(Resize::new(256)).op(CenterCrop::new(224))),
    ]
}

fn run(
    source: &InMemory,
    ops: AddOps,
    approx: bool,
    threads: usize,
) -> (Vec<u8>, sluice::exec::RunStats) {
    let p = ops(Pipeline::builder(source.clone()))
        .batch_size(4)
        .seed(99)
        .threads(threads)
        .allow_approx(approx)
        .build()
        .unwrap();
    let bytes = common::epoch_outputs(&p, 0)
        .into_iter()
        .flat_map(|(b, _, _)| b)
        .collect();
    (bytes, p.stats())
}

/// Mean absolute difference and PSNR (dB) between two u8 outputs.
fn difference(a: &[u8], b: &[u8]) -> (f64, f64) {
    assert_eq!(a.len(), b.len());
    let (mut abs, mut sq) = (0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let d = f64::from(x) - f64::from(y);
        abs += d.abs();
        sq += d * d;
    }
    let n = a.len() as f64;
    (abs / n, 10.0 * (255.0 * 255.0 / (sq / n)).log10())
}

#[test]
fn scaled_decode_runs_is_deterministic_and_stays_close_to_the_exact_output() {
    let n = 12;
    let source = large_photos(n);
    for (name, ops) in crops() {
        let (exact, exact_stats) = run(&source, ops, false, 2);
        let (approx, stats) = run(&source, ops, true, 1);
        assert_eq!(
            exact_stats.scaled_decodes, 0,
            "{name}: scaled without approx"
        );
        assert!(
            stats.scaled_decodes > 0 && stats.scaled_decodes <= n as u64,
            "{name}: {} of {n} images decoded scaled",
            stats.scaled_decodes
        );
        assert_ne!(exact, approx, "{name}: the scaled path changed nothing");
        let (threads3, _) = run(&source, ops, true, 3);
        assert!(
            threads3 == approx,
            "{name}: approx output depends on threads"
        );
        let (mad, psnr) = difference(&exact, &approx);
        println!(
            "{name}: {} of {n} scaled, mean |Δ| {mad:.2} levels, PSNR {psnr:.1} dB",
            stats.scaled_decodes
        );
        assert!(
            mad < 6.5 && psnr > 29.5,
            "{name}: mean |Δ| {mad:.2}, PSNR {psnr:.1} dB"
        );
    }
}

#[test]
fn crops_that_do_not_shrink_twofold_decode_exactly_with_approx_allowed() {
    // ImageNet-size images (short sides under 512 px): Resize 256 shrinks them < 2×.
    let source = small_photos(10);
    let (_, val) = crops()[1];
    let (exact, _) = run(&source, val, false, 2);
    let (approx, stats) = run(&source, val, true, 2);
    assert_eq!(stats.scaled_decodes, 0);
    assert!(stats.window_decodes > 0);
    assert!(exact == approx, "approx changed an unscaled decode");
}
