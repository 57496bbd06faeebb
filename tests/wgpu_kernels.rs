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
