//! WGSL kernels against the CPU path, on whatever wgpu adapter exists (lavapipe in CI).
//! Without an adapter the tests print "skipped: no wgpu adapter" — unless SLUICE_REQUIRE_WGPU
//! is set (as .ci/run does), in which case a missing adapter fails the run.

mod common;

use common::{random_image, rng, test_seed};
use sluice::backend::wgpu::WgpuContext;
use sluice::ops::Normalize;
use sluice::rng::Uniform;

fn context() -> Option<WgpuContext> {
    match WgpuContext::new() {
        Ok(ctx) => {
            eprintln!("wgpu adapter: {}", ctx.describe());
            Some(ctx)
        }
        Err(reason) if std::env::var_os("SLUICE_REQUIRE_WGPU").is_some() => {
            panic!("SLUICE_REQUIRE_WGPU is set but {reason}")
        }
        Err(reason) => {
            eprintln!("skipped: {reason}");
            None
        }
    }
}

#[test]
fn normalize_flip_kernel_matches_the_cpu_path() {
    let Some(ctx) = context() else { return };
    let seed = test_seed();
    let normalize = Normalize::imagenet();
    // Sizes that are not multiples of the 64-wide workgroup, one and several samples.
    for (case, (w, h, n)) in [(37, 23, 5), (64, 1, 1), (130, 7, 3), (1, 1, 2)]
        .into_iter()
        .enumerate()
    {
        let mut r = rng(seed, case as u64);
        let images: Vec<_> = (0..n).map(|_| random_image(&mut r, w, h)).collect();
        let flips: Vec<bool> = (0..n).map(|_| r.bernoulli(0.5)).collect();
        let got = ctx.normalize_batch(&images, &flips, &normalize).unwrap();
        let plane = (w * h) as usize;
        assert_eq!(got.len(), n * plane * 3);
        for (i, image) in images.iter().enumerate() {
            let mut want = vec![0u8; plane * 3 * 4];
            normalize.write(image, flips[i], &mut want);
            let want: Vec<f32> = bytemuck::pod_collect_to_vec(&want);
            for (j, (g, w)) in got[i * plane * 3..(i + 1) * plane * 3]
                .iter()
                .zip(&want)
                .enumerate()
            {
                // Same formula; a GPU may fuse the multiply-add (one rounding instead of two).
                assert!(
                    (g - w).abs() <= 1e-6 * w.abs().max(1.0),
                    "{w}x{h} sample {i} element {j}: gpu {g} cpu {w} (NaN = never written)"
                );
            }
        }
    }
}

#[test]
fn color_jitter_kernel_matches_the_cpu_path() {
    use sluice::ops::{ColorJitter, JitterParams, Op, OpParams, Scratch};
    let Some(ctx) = context() else { return };
    let seed = test_seed();
    let jitter = ColorJitter::new(0.4, 0.4, 0.4, 0.1);
    let cpu = |image: &sluice::tensor::Image, p: &JitterParams| {
        let mut out = image.clone();
        Op::from(jitter.clone()).apply_image(
            &OpParams::Jitter(*p),
            &mut out,
            &mut Scratch::default(),
        );
        out
    };
    // One adjustment at a time (tolerance 1: GPU float division and fused multiply-adds may land
    // on the other side of a truncation), then all four in each sample's random order.
    for only in [Some(0usize), Some(1), Some(2), Some(3), None] {
        let mut r = rng(seed, only.map_or(9, |o| o as u64));
        let (w, h, n) = (29, 17, 6); // 493 pixels: not a multiple of the 4-pixel groups
        let mut images: Vec<_> = (0..n).map(|_| random_image(&mut r, w, h)).collect();
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
        let want: Vec<_> = images.iter().zip(&params).map(|(i, p)| cpu(i, p)).collect();
        ctx.color_jitter_batch(&mut images, &params).unwrap();
        let tolerance = if only.is_some() { 1 } else { 2 };
        let mut differing = 0usize;
        for (got, want) in images.iter().zip(&want) {
            for (a, b) in got.data.iter().zip(&want.data) {
                assert!(a.abs_diff(*b) <= tolerance, "{only:?}: gpu {a} cpu {b}");
                differing += usize::from(a != b);
            }
        }
        let total = n * (w * h) as usize * 3;
        assert!(
            differing * 100 <= total,
            "{only:?}: {differing} of {total} values differ"
        );
    }
}

/// u8 results: every value within 1 of the CPU's, and at most 1% of values off at all (a GPU
/// may round a product or sum that lies on a truncation boundary the other way).
fn assert_close(got: &sluice::tensor::Image, want: &sluice::tensor::Image, what: &str) {
    let d = common::max_diff(got, want);
    assert!(d <= 1, "{what}: max diff {d}");
    let off = got
        .data
        .iter()
        .zip(&want.data)
        .filter(|(a, b)| a != b)
        .count();
    assert!(
        off * 100 <= got.data.len(),
        "{what}: {off} of {} values differ",
        got.data.len()
    );
}

#[test]
fn grayscale_and_blur_kernels_match_the_cpu_path() {
    use sluice::ops::{GaussianBlur, Op, OpParams, RandomGrayscale, Scratch};
    let Some(ctx) = context() else { return };
    let seed = test_seed();
    let apply_cpu = |op: Op, p: OpParams, image: &sluice::tensor::Image| {
        let mut out = image.clone();
        op.apply_image(&p, &mut out, &mut Scratch::default());
        out
    };
    for (case, (w, h, n)) in [(29, 17, 5), (3, 40, 3), (1, 1, 2)].into_iter().enumerate() {
        let mut r = rng(seed, case as u64);
        let images: Vec<_> = (0..n).map(|_| random_image(&mut r, w, h)).collect();

        let gray: Vec<bool> = (0..n).map(|i| i % 2 == 0 || r.bernoulli(0.5)).collect();
        let mut got = images.clone();
        ctx.grayscale_batch(&mut got, &gray).unwrap();
        for i in 0..n {
            let want = apply_cpu(
                RandomGrayscale::new(1.0).into(),
                OpParams::Apply(gray[i]),
                &images[i],
            );
            assert_close(&got[i], &want, &format!("grayscale {w}x{h} sample {i}"));
        }

        let blur = GaussianBlur::new(23, (0.1, 2.0));
        let sigmas: Vec<Option<f32>> = (0..n)
            .map(|i| (i % 2 == 0 || r.bernoulli(0.5)).then(|| r.uniform(0.1, 2.0) as f32))
            .collect();
        let mut got = images.clone();
        ctx.gaussian_blur_batch(&mut got, &sigmas, 23).unwrap();
        for i in 0..n {
            let want = apply_cpu(blur.clone().into(), OpParams::Blur(sigmas[i]), &images[i]);
            let d = common::max_diff(&got[i], &want);
            assert!(
                d <= 1,
                "blur {w}x{h} sample {i} sigma {:?}: max diff {d}",
                sigmas[i]
            );
        }
    }
}
