//! Every CPU kernel against the plain reference in `sluice::reference`, on fresh random images
//! and parameters. Tolerances are stated per operator.

mod common;

use common::ulp_distance16;
use common::{max_diff, random_image, rng, test_seed};
use sluice::ops::{
    adjust_brightness, adjust_contrast, adjust_hue, adjust_saturation, CenterCrop, CropBox,
    GaussianBlur, Normalize, Op, OpParams, RandomGrayscale, RandomHorizontalFlip,
    RandomResizedCrop, Resize, Scratch,
};
use sluice::reference;
use sluice::rng::Uniform;
use sluice::tensor::{DType, Image, Layout};

fn apply(op: impl Into<Op>, params: OpParams, image: &Image) -> Image {
    let mut out = image.clone();
    op.into()
        .apply_image(&params, &mut out, &mut Scratch::default());
    out
}

#[test]
fn random_resized_crop_matches_reference_within_1() {
    let seed = test_seed();
    for case in 0..12 {
        let mut r = rng(seed, case);
        let (w, h) = (r.below(300) as u32 + 8, r.below(300) as u32 + 8);
        let src = random_image(&mut r, w, h);
        let out_size = [224, 37, 5][case as usize % 3];
        let op = RandomResizedCrop::new(out_size);
        let crop = op.draw(&mut r, w, h);
        let got = apply(op, OpParams::Crop(crop), &src);
        let want = reference::resize_bilinear(&src, &crop);
        let d = max_diff(&got, &want);
        assert!(
            d <= 1,
            "case {case}: {w}x{h} crop {crop:?}: max diff {d} > 1"
        );
    }
}

#[test]
fn resize_matches_reference_within_1_up_and_down() {
    let seed = test_seed();
    for (case, (w, h, short)) in [(301, 217, 64), (50, 70, 256), (97, 13, 13), (640, 480, 256)]
        .into_iter()
        .enumerate()
    {
        let src = random_image(&mut rng(seed, case as u64), w, h);
        let op = Resize::new(short);
        let crop = op.crop_box(w, h);
        let got = apply(op.clone(), OpParams::Crop(crop), &src);
        let (ow, oh) = op.output_size(w, h);
        assert_eq!((got.width, got.height), (ow, oh));
        assert_eq!(ow.min(oh), short, "shorter side");
        let d = max_diff(&got, &reference::resize_bilinear(&src, &crop));
        assert!(d <= 1, "{w}x{h} -> shorter {short}: max diff {d}");
    }
    // torchvision truncates the long side: 256 * 500 / 333 = 384.38 -> 384.
    assert_eq!(Resize::new(256).output_size(500, 333), (384, 256));
}

#[test]
fn center_crop_and_pad_match_reference_exactly() {
    let seed = test_seed();
    for (case, (w, h, cw, ch)) in [(300, 250, 224, 224), (101, 100, 50, 51), (30, 40, 64, 32)]
        .into_iter()
        .enumerate()
    {
        let src = random_image(&mut rng(seed, case as u64), w, h);
        let op = CenterCrop {
            width: cw,
            height: ch,
        };
        let got = apply(op, OpParams::None, &src);
        assert_eq!(
            got,
            reference::center_crop(&src, cw, ch),
            "{w}x{h} -> {cw}x{ch}"
        );
    }
}

#[test]
fn flip_is_exact_and_respects_the_drawn_decision() {
    let src = random_image(&mut rng(test_seed(), 0), 33, 7);
    let flipped = apply(RandomHorizontalFlip::new(0.5), OpParams::Apply(true), &src);
    assert_eq!(flipped, reference::hflip(&src));
    let kept = apply(RandomHorizontalFlip::new(0.5), OpParams::Apply(false), &src);
    assert_eq!(kept, src);
}

#[test]
fn grayscale_matches_reference_within_1() {
    let src = random_image(&mut rng(test_seed(), 0), 64, 48);
    let got = apply(RandomGrayscale::new(1.0), OpParams::Apply(true), &src);
    let d = max_diff(&got, &reference::grayscale(&src));
    assert!(d <= 1, "max diff {d}");
    assert!(got.data.chunks(3).all(|p| p[0] == p[1] && p[1] == p[2]));
}

#[test]
fn color_adjustments_match_reference_within_1() {
    let seed = test_seed();
    for case in 0..6 {
        let mut r = rng(seed, case);
        let src = random_image(&mut r, 67, 45);
        let f = r.uniform(0.0, 2.0) as f32;
        let hue = r.uniform(-0.5, 0.5) as f32;
        let check = |name: &str, got: Image, want: Image| {
            let d = max_diff(&got, &want);
            assert!(d <= 1, "{name} factor {f} hue {hue}: max diff {d}");
        };
        let mut img = src.clone();
        adjust_brightness(&mut img, f);
        check("brightness", img, reference::brightness(&src, f64::from(f)));
        let mut img = src.clone();
        adjust_contrast(&mut img, f);
        check("contrast", img, reference::contrast(&src, f64::from(f)));
        let mut img = src.clone();
        adjust_saturation(&mut img, f);
        check("saturation", img, reference::saturation(&src, f64::from(f)));
        let mut img = src.clone();
        adjust_hue(&mut img, hue);
        check("hue", img, reference::hue(&src, f64::from(hue)));
    }
}

#[test]
fn gaussian_blur_matches_direct_2d_convolution_within_1() {
    let seed = test_seed();
    for (case, (w, h)) in [(40, 30), (9, 31), (5, 5)].into_iter().enumerate() {
        let mut r = rng(seed, case as u64);
        let src = random_image(&mut r, w, h);
        let sigma = r.uniform(0.1, 2.0) as f32;
        let op = GaussianBlur::new(23, (0.1, 2.0));
        let got = apply(op, OpParams::Blur(Some(sigma)), &src);
        let want = reference::gaussian_blur(&src, 23, f64::from(sigma));
        let d = max_diff(&got, &want);
        assert!(d <= 1, "{w}x{h} sigma {sigma}: max diff {d}");
    }
    // Skipped blur leaves the image alone.
    let src = random_image(&mut rng(seed, 9), 8, 8);
    let op = GaussianBlur::new(23, (0.1, 2.0));
    assert_eq!(apply(op, OpParams::Blur(None), &src), src);
}

#[test]
fn normalize_matches_reference_in_every_dtype_and_layout() {
    let src = random_image(&mut rng(test_seed(), 0), 23, 11);
    let mean = [0.485, 0.456, 0.406];
    let std = [0.229, 0.224, 0.225];
    let want = reference::normalize_chw(&src, mean.map(f64::from), std.map(f64::from));
    let plane = 23 * 11;
    for dtype in [DType::F32, DType::F16, DType::Bf16] {
        for layout in [Layout::Chw, Layout::Hwc] {
            for flip in [false, true] {
                let op = Normalize {
                    mean,
                    std,
                    dtype,
                    layout,
                };
                // Poison: an unwritten element would show as NaN.
                let mut out = vec![0xFFu8; plane * 3 * dtype.size()];
                op.write(&src, flip, &mut out);
                for c in 0..3 {
                    for y in 0..11 {
                        for x in 0..23 {
                            let sx = if flip { 22 - x } else { x };
                            let i = match layout {
                                Layout::Chw => c * plane + y * 23 + x,
                                Layout::Hwc => (y * 23 + x) * 3 + c,
                            };
                            let w = want[c * plane + y * 23 + sx];
                            let at = format!("{dtype:?} {layout:?} flip {flip} c{c} y{y} x{x}");
                            assert_within_one_ulp_of(&out, i, dtype, w, &at);
                        }
                    }
                }
            }
        }
    }
}

/// Element `i` of `out` (in `dtype`) is within one ulp of the correctly rounded `want`:
/// compared as bit patterns for f16/bf16 (f32: within 1e-5, values are ~2).
fn assert_within_one_ulp_of(out: &[u8], i: usize, dtype: DType, want: f64, at: &str) {
    let bits = || u16::from_le_bytes([out[2 * i], out[2 * i + 1]]);
    let (got, exact) = match dtype {
        DType::F16 => (bits(), half::f16::from_f64(want).to_bits()),
        DType::Bf16 => (bits(), half::bf16::from_f64(want).to_bits()),
        _ => {
            let got = f64::from(dtype.load(out, i));
            assert!(
                (got - want).abs() <= 1e-5 * want.abs().max(1.0),
                "{at}: {got} vs {want}"
            );
            return;
        }
    };
    assert!(
        ulp_distance16(got, exact) <= 1,
        "{at}: bits {got:#06x} vs correctly rounded {exact:#06x} ({want})"
    );
}

/// The CPU's f16/bf16 stores (the oracle the GPU kernels are held to) round to nearest, ties to
/// even, keep subnormals, and saturate to infinity past the largest finite value.
#[test]
fn half_precision_stores_round_to_nearest_even() {
    let store = |dtype: DType, v: f32| {
        let mut out = [0u8; 2];
        dtype.store(&[v], &mut out);
        u16::from_le_bytes(out)
    };
    let f16_cases: [(f32, u16); 9] = [
        (1.0, 0x3c00),
        (1.0 + 1.0 / 2048.0, 0x3c00), // tie: to the even neighbour below
        (1.0 + 3.0 / 2048.0, 0x3c02), // tie: to the even neighbour above
        (1.0 + 1.0 / 1024.0, 0x3c01), // exactly one ulp
        (-2.0, 0xc000),
        (5.960_464_5e-8, 0x0001), // the smallest subnormal
        (65504.0, 0x7bff),        // the largest finite
        (65520.0, 0x7c00),        // half-way past it: infinity
        (0.099_975_586, 0x2e66),  // 0.1's neighbourhood
    ];
    for (v, bits) in f16_cases {
        assert_eq!(store(DType::F16, v), bits, "f16 {v}");
    }
    let bf16_cases: [(f32, u16); 7] = [
        (1.0, 0x3f80),
        (1.0 + 1.0 / 256.0, 0x3f80), // tie: even below
        (1.0 + 3.0 / 256.0, 0x3f82), // tie: even above
        (-0.5, 0xbf00),
        (9.183_55e-41, 0x0001),   // the smallest subnormal
        (3.389_531_4e38, 0x7f7f), // the largest finite
        (f32::MAX, 0x7f80),       // rounds past it: infinity
    ];
    for (v, bits) in bf16_cases {
        assert_eq!(store(DType::Bf16, v), bits, "bf16 {v}");
    }
}

#[test]
fn crop_box_whole_is_the_identity_resize() {
    let src = random_image(&mut rng(test_seed(), 0), 31, 17);
    let got = apply(
        Resize::new(17),
        OpParams::Crop(CropBox::whole(31, 17, 31, 17)),
        &src,
    );
    assert_eq!(got, src);
}

/// The reorder rule trusts declared commutations: every pair declared Exact must give the same
/// bytes in either order (same parameters), and declarations must agree in both directions.
#[test]
fn declared_exact_commutations_hold_byte_for_byte() {
    use sluice::ops::{ColorJitter, Commute};
    let seed = test_seed();
    let ops: Vec<Op> = vec![
        RandomHorizontalFlip::new(1.0).into(),
        ColorJitter::new(0.4, 0.4, 0.4, 0.1).into(),
        RandomGrayscale::new(1.0).into(),
        GaussianBlur::new(23, (0.1, 2.0)).into(),
        CenterCrop::new(24).into(),
    ];
    let mut checked = 0;
    for a in &ops {
        for b in &ops {
            let declared = a.spec().commutes(b.spec().kind);
            assert_eq!(
                declared,
                b.spec().commutes(a.spec().kind),
                "{} and {} disagree about commuting",
                a.name(),
                b.name()
            );
            if declared != Some(Commute::Exact) {
                continue;
            }
            for case in 0..20 {
                let mut r = rng(seed, case);
                let (w, h) = (r.below(40) as u32 + 30, r.below(40) as u32 + 30);
                let image = random_image(&mut r, w, h);
                let pa = a.draw(&mut r, w, h);
                let pb = b.draw(&mut r, w, h);
                let ab = apply(b.clone(), pb, &apply(a.clone(), pa, &image));
                let ba = apply(a.clone(), pa, &apply(b.clone(), pb, &image));
                assert!(
                    ab == ba,
                    "{} then {} differs from the reverse",
                    a.name(),
                    b.name()
                );
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 100,
        "only {checked} cases: declarations missing?"
    );
}
