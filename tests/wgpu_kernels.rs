//! WGSL kernels against the CPU path, on whatever wgpu adapter exists (lavapipe in CI).
//! Without an adapter the tests print "skipped: no wgpu adapter" — unless SLUICE_REQUIRE_WGPU
//! is set (as .ci/run does), in which case a missing adapter fails the run.
//!
//! Every run poisons kernel outputs first (0xFF bytes: NaN as float), so an element a kernel
//! never writes fails the comparison. Tolerances, per result type:
//! - u8 images: every value within 1 of the CPU's, and at most 1% of values off at all (a GPU
//!   may round a product or sum that lies on a rounding boundary the other way). Resampling
//!   (crop + resize) is exact: the kernels run the CPU resizer's fixed-point arithmetic on its
//!   own weights, so the bytes equal the CPU's (and are within 1 of the f64 oracle).
//! - float tensors: within 1e-6 relative of the CPU (a GPU may fuse the multiply-add), also
//!   when the fused kernel resamples first; f16/bf16 within one unit in the last place.

mod common;

use common::{
    assert_tensor_within_one_ulp, cpu_apply, ragged_images, random_image, rng, test_seed,
};
use sluice::backend::wgpu::{ImageStage, TensorWrite, WgpuContext};
use sluice::ops::{
    CropBox, GaussianBlur, JitterParams, Normalize, Op, OpParams, RandomGrayscale,
    RandomResizedCrop, Resize,
};
use sluice::rng::{SampleRng, Uniform};
use sluice::tensor::{DType, Image, Layout};

fn context() -> Option<WgpuContext> {
    let ctx = common::or_skip(WgpuContext::new(), "SLUICE_REQUIRE_WGPU")?;
    eprintln!("wgpu adapter: {}", ctx.describe());
    ctx.set_poison(true);
    Some(ctx)
}

/// Run `f` with outputs poisoned by 0xFF bytes and again by 0x00 bytes: an element a kernel
/// never writes differs between the runs, whatever tolerance the comparison with the CPU has.
fn poisoned_twice<T: PartialEq>(ctx: &WgpuContext, what: &str, f: impl Fn() -> T) -> T {
    ctx.set_poison_byte(0xFF);
    let first = f();
    ctx.set_poison_byte(0x00);
    let second = f();
    ctx.set_poison_byte(0xFF);
    assert!(
        first == second,
        "{what}: the result depends on the poison, so some output element is never written"
    );
    first
}

/// See the module docs: every value within `tolerance`, at most 1% of values off.
fn assert_close(got: &Image, want: &Image, tolerance: u8, what: &str) {
    assert_eq!(
        (got.width, got.height),
        (want.width, want.height),
        "{what}: sizes differ"
    );
    common::assert_u8_close(&got.data, &want.data, tolerance, what);
}

/// Smooth-ish random images: resampling them exercises real interpolation, not just noise.
fn gradient_image(r: &mut SampleRng, w: u32, h: u32) -> Image {
    let mut img = random_image(r, w, h);
    for y in 0..h as usize {
        for x in 0..w as usize {
            for c in 0..3 {
                let i = (y * w as usize + x) * 3 + c;
                let base = (x * 255 / w as usize + y * 97 / h as usize + c * 40) % 256;
                img.data[i] = ((base as u32 * 3 + u32::from(img.data[i]) / 16) / 3) as u8;
            }
        }
    }
    img
}

#[test]
fn resample_kernel_matches_the_cpu_path_on_a_ragged_batch() {
    let Some(ctx) = context() else { return };
    let seed = test_seed();
    let mut r = rng(seed, 1);
    let n = 9;
    let images: Vec<Image> = (0..n)
        .map(|i| {
            let (w, h) = (20 + r.below(180) as u32, 20 + r.below(180) as u32);
            if i % 2 == 0 {
                gradient_image(&mut r, w, h)
            } else {
                random_image(&mut r, w, h)
            }
        })
        .collect();
    // RandomResizedCrop boxes (down- and up-scaling, fractional sizes), and Resize's.
    let rrc = RandomResizedCrop::new(37);
    let resize = Resize::new(23);
    for (name, boxes) in [
        (
            "RandomResizedCrop",
            images
                .iter()
                .map(|im| rrc.draw(&mut r, im.width, im.height))
                .collect::<Vec<CropBox>>(),
        ),
        (
            "Resize",
            images
                .iter()
                .map(|im| resize.crop_box(im.width, im.height))
                .collect(),
        ),
    ] {
        let got = poisoned_twice(&ctx, name, || {
            ctx.run_to_images(&images, &[ImageStage::Resample(boxes.clone())])
                .unwrap()
        });
        for (i, image) in images.iter().enumerate() {
            let want = cpu_apply(rrc.clone(), OpParams::Crop(boxes[i]), image);
            let what = format!("{name} sample {i} {:?}", boxes[i]);
            assert_eq!(got[i], want, "{what}: differs from the CPU resizer");
            let oracle = sluice::reference::resize_bilinear(image, &boxes[i]);
            assert!(
                common::max_diff(&got[i], &oracle) <= 1,
                "{what} vs f64 oracle"
            );
        }
    }
}

/// The CPU path's output for `image` through Normalize-like `write`, optionally flipped.
fn cpu_tensor(norm: &Op, image: &Image, flip: bool) -> Vec<u8> {
    let n = image.width as usize * image.height as usize * 3;
    let size = match norm {
        Op::Normalize(n) => n.dtype.size(),
        Op::Cast(c) => c.dtype.size(),
        _ => unreachable!(),
    };
    let mut out = vec![0u8; n * size];
    norm.write_tensor(image, flip, &mut out);
    out
}

#[test]
fn tensor_write_matches_the_cpu_path_in_every_dtype_and_layout() {
    let Some(ctx) = context() else { return };
    let seed = test_seed();
    let mut r = rng(seed, 2);
    for (case, (w, h, n)) in [(37, 23, 5), (64, 1, 1), (13, 7, 3), (1, 1, 2)]
        .into_iter()
        .enumerate()
    {
        let images: Vec<_> = (0..n).map(|_| random_image(&mut r, w, h)).collect();
        let flips: Vec<bool> = (0..n).map(|_| r.bernoulli(0.5)).collect();
        for dtype in [DType::F32, DType::F16, DType::Bf16, DType::U8] {
            for layout in [Layout::Chw, Layout::Hwc] {
                let op: Op = if case % 2 == 0 || dtype == DType::U8 {
                    Op::Cast(sluice::ops::Cast { dtype, layout })
                } else {
                    Op::Normalize(Normalize {
                        dtype,
                        layout,
                        ..Normalize::imagenet()
                    })
                };
                let write = TensorWrite::for_op(&op).unwrap();
                let per = (w * h) as usize * 3 * dtype.size();
                let got = poisoned_twice(&ctx, "tensor write", || {
                    let mut got = vec![0u8; per * n];
                    ctx.run_to_tensor(
                        &images,
                        &[ImageStage::Flip(flips.clone())],
                        &write,
                        &mut got,
                    )
                    .unwrap();
                    got
                });
                for i in 0..n {
                    let want = cpu_tensor(&op, &images[i], flips[i]);
                    let what = format!("{} {dtype:?} {layout:?} {w}x{h} sample {i}", op.name());
                    assert_tensor_within_one_ulp(&got[i * per..(i + 1) * per], &want, dtype, &what);
                }
            }
        }
    }
}

#[test]
fn fused_crop_resize_flip_normalize_matches_the_cpu_path() {
    let Some(ctx) = context() else { return };
    let seed = test_seed();
    let mut r = rng(seed, 3);
    let n = 7;
    let images = ragged_images(&mut r, n, 24, 160);
    let rrc = RandomResizedCrop::new(33);
    let boxes: Vec<_> = images
        .iter()
        .map(|im| rrc.draw(&mut r, im.width, im.height))
        .collect();
    let flips: Vec<bool> = (0..n).map(|_| r.bernoulli(0.5)).collect();
    for dtype in [DType::F32, DType::F16] {
        let norm = Normalize {
            dtype,
            ..Normalize::imagenet()
        };
        let write = TensorWrite::for_op(&Op::Normalize(norm.clone())).unwrap();
        let per = 33 * 33 * 3 * dtype.size();
        let stages = [
            ImageStage::Resample(boxes.clone()),
            ImageStage::Flip(flips.clone()),
        ];
        let got = poisoned_twice(&ctx, "fused crop+flip+normalize", || {
            let mut got = vec![0u8; per * n];
            ctx.run_to_tensor(&images, &stages, &write, &mut got)
                .unwrap();
            got
        });
        for i in 0..n {
            let resized = cpu_apply(rrc.clone(), OpParams::Crop(boxes[i]), &images[i]);
            let want = cpu_tensor(&Op::Normalize(norm.clone()), &resized, flips[i]);
            let g = &got[i * per..(i + 1) * per];
            assert_tensor_within_one_ulp(g, &want, dtype, &format!("{dtype:?} sample {i}"));
        }
    }
}

#[test]
fn color_jitter_kernel_matches_the_cpu_path() {
    use sluice::ops::ColorJitter;
    let Some(ctx) = context() else { return };
    let seed = test_seed();
    let jitter = ColorJitter::new(0.4, 0.4, 0.4, 0.1);
    // One adjustment at a time (tolerance 1: GPU float division and fused multiply-adds may land
    // on the other side of a truncation), then all four in each sample's random order, on a
    // ragged batch (sizes not multiples of the 4-pixel groups).
    for only in [Some(0usize), Some(1), Some(2), Some(3), None] {
        let mut r = rng(seed, only.map_or(9, |o| o as u64));
        let n = 6;
        let images = ragged_images(&mut r, n, 5, 40);
        let params: Vec<JitterParams> = (0..n)
            .map(|_| {
                let mut p = jitter.draw(&mut r);
                p.apply = true;
                if let Some(o) = only {
                    for (k, f) in p.factors.iter_mut().enumerate() {
                        if k != o {
                            *f = None;
                        }
                    }
                }
                p
            })
            .collect();
        let got = poisoned_twice(&ctx, "ColorJitter", || {
            ctx.run_to_images(&images, &[ImageStage::Jitter(params.clone())])
                .unwrap()
        });
        let tolerance = if only.is_some() { 1 } else { 2 };
        for (i, image) in images.iter().enumerate() {
            let want = cpu_apply(jitter.clone(), OpParams::Jitter(params[i]), image);
            assert_close(&got[i], &want, tolerance, &format!("{only:?} sample {i}"));
        }
    }
}

#[test]
fn grayscale_blur_crop_and_flip_kernels_match_the_cpu_path() {
    use sluice::ops::{CenterCrop, RandomHorizontalFlip};
    let Some(ctx) = context() else { return };
    let seed = test_seed();
    for (case, (lo, hi, n)) in [(17, 45, 5), (1, 3, 3)].into_iter().enumerate() {
        let mut r = rng(seed, case as u64);
        let images = ragged_images(&mut r, n, lo, hi);

        let gray: Vec<bool> = (0..n).map(|i| i % 2 == 0 || r.bernoulli(0.5)).collect();
        let got = poisoned_twice(&ctx, "RandomGrayscale", || {
            ctx.run_to_images(&images, &[ImageStage::Grayscale(gray.clone())])
                .unwrap()
        });
        for i in 0..n {
            let want = cpu_apply(
                RandomGrayscale::new(1.0),
                OpParams::Apply(gray[i]),
                &images[i],
            );
            assert_close(&got[i], &want, 1, &format!("grayscale sample {i}"));
        }

        let blur = GaussianBlur::new(23, (0.1, 2.0));
        let sigmas: Vec<Option<f32>> = (0..n)
            .map(|i| (i % 2 == 0 || r.bernoulli(0.5)).then(|| r.uniform(0.1, 2.0) as f32))
            .collect();
        let stage = ImageStage::Blur {
            sigmas: sigmas.clone(),
            kernel_size: 23,
        };
        let got = poisoned_twice(&ctx, "GaussianBlur", || {
            ctx.run_to_images(&images, std::slice::from_ref(&stage))
                .unwrap()
        });
        for i in 0..n {
            let want = cpu_apply(blur.clone(), OpParams::Blur(sigmas[i]), &images[i]);
            assert_close(
                &got[i],
                &want,
                1,
                &format!("blur sample {i} {:?}", sigmas[i]),
            );
        }

        // Exact: copies (CenterCrop pads where the image is smaller than the crop).
        let crop = CenterCrop::new(20);
        let flips: Vec<bool> = (0..n).map(|_| r.bernoulli(0.5)).collect();
        let stages = [
            ImageStage::CenterCrop {
                width: 20,
                height: 20,
            },
            ImageStage::Flip(flips.clone()),
        ];
        let got = poisoned_twice(&ctx, "crop and flip", || {
            ctx.run_to_images(&images, &stages).unwrap()
        });
        for i in 0..n {
            let cropped = cpu_apply(crop.clone(), OpParams::None, &images[i]);
            let want = cpu_apply(
                RandomHorizontalFlip::new(0.5),
                OpParams::Apply(flips[i]),
                &cropped,
            );
            assert_eq!(got[i], want, "center crop + flip sample {i}");
        }
    }
}

#[test]
fn batches_larger_than_one_binding_are_chunked_with_the_same_result_and_pooled_buffers() {
    let Some(mut ctx) = context() else { return };
    let seed = test_seed();
    let mut r = rng(seed, 4);
    let n = 11;
    let images = ragged_images(&mut r, n, 30, 90);
    let rrc = RandomResizedCrop::new(48);
    let boxes: Vec<_> = images
        .iter()
        .map(|im| rrc.draw(&mut r, im.width, im.height))
        .collect();
    let stages = [
        ImageStage::Resample(boxes),
        ImageStage::Grayscale((0..n).map(|_| r.bernoulli(0.5)).collect()),
    ];
    let write = TensorWrite::for_op(&Op::Normalize(Normalize::imagenet())).unwrap();
    let per = 48 * 48 * 3 * 4;
    let mut whole = vec![0u8; per * n];
    ctx.run_to_tensor(&images, &stages, &write, &mut whole)
        .unwrap();
    // Warm pool: the same batch again allocates nothing on the device.
    let before = ctx.buffer_allocations();
    let mut again = vec![0u8; per * n];
    ctx.run_to_tensor(&images, &stages, &write, &mut again)
        .unwrap();
    assert_eq!(ctx.buffer_allocations(), before, "steady state allocated");
    assert_eq!(whole, again);
    // A 64 KiB binding limit holds only two or three 48x48 f32 samples: several chunks.
    ctx.set_binding_limit(64 << 10);
    let mut chunked = vec![0u8; per * n];
    ctx.run_to_tensor(&images, &stages, &write, &mut chunked)
        .unwrap();
    assert_eq!(whole, chunked, "chunked result differs");
    // A sample that cannot fit at all is an error, not a panic.
    let big = vec![random_image(&mut r, 200, 200)];
    let err = ctx
        .run_to_images(&big, &[ImageStage::Grayscale(vec![true])])
        .unwrap_err();
    assert!(err.contains("binding limit"), "{err}");
}

/// The token kernels (padding, MlmMask, EmbeddingLookup) bit-exact with the CPU operators on
/// fresh random sequences (tests/common/text.rs), outputs poisoned twice.
#[test]
fn token_kernels_match_the_cpu_bit_for_bit() {
    let Some(ctx) = context() else { return };
    for case in common::text::cases() {
        let (batch, layout) = case.encode();
        let got = poisoned_twice(&ctx, &case.name, || ctx.run_encoded(&batch).unwrap());
        case.check(&layout, &got);
        assert!(
            case.mlm.is_none() || case.masked() > 0,
            "{}: nothing masked",
            case.name
        );
    }
}

/// The speech kernels against the CPU operators (tolerances in tests/common/spectral.rs), on
/// fresh random signals of ragged lengths, outputs poisoned twice.
#[test]
fn speech_kernels_match_the_cpu_on_ragged_random_signals() {
    let Some(ctx) = context() else { return };
    let cases = common::spectral::cases(4, (300, 2600));
    assert!(common::spectral::masks_were_drawn(&cases));
    for case in &cases {
        let (batch, draws, width) = common::spectral::encode(case);
        let got = poisoned_twice(&ctx, &case.name, || ctx.run_encoded(&batch).unwrap());
        common::spectral::check(case, &got, &draws, width);
    }
}
