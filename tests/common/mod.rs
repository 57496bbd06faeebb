//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod http;
pub mod spectral;
pub mod text;

use sluice::gen::{encode_jpeg, render_image};
use sluice::ops::{Op, OpParams, Scratch};
use sluice::rng::{SampleRng, Uniform};
use sluice::source::InMemory;
use sluice::tensor::Image;
use sluice::Pipeline;

/// Each batch's bytes, lengths and sample indices over one epoch.
pub fn epoch_outputs(p: &Pipeline, epoch: u32) -> Vec<(Vec<u8>, Vec<usize>, Vec<u64>)> {
    p.epoch(epoch)
        .unwrap()
        .map(|b| {
            let b = b.unwrap();
            (
                b.bytes().to_vec(),
                b.lengths.clone(),
                b.sample_indices.clone(),
            )
        })
        .collect()
}

/// A fresh seed per test process (override with SLUICE_TEST_SEED to replay a failure), the
/// same for every call: a test that builds two pipelines from "the same" random data must get
/// the same data twice. Printed once so a failing run can be reproduced.
pub fn test_seed() -> u64 {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SEED.get_or_init(|| {
        let seed = std::env::var("SLUICE_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("test seed: {seed} (set SLUICE_TEST_SEED={seed} to replay)");
        seed
    })
}

pub fn rng(seed: u64, stream: u64) -> SampleRng {
    SampleRng::new(seed, 0, stream, 0)
}

/// Uniform random pixels: the hardest case for rounding.
pub fn random_image(rng: &mut SampleRng, width: u32, height: u32) -> Image {
    let data = (0..width as usize * height as usize * 3)
        .map(|_| (rng.next_u32() & 0xFF) as u8)
        .collect();
    Image::new(width, height, data)
}

/// Largest absolute per-element difference between two images of the same size.
pub fn max_diff(a: &Image, b: &Image) -> u8 {
    assert_eq!(
        (a.width, a.height),
        (b.width, b.height),
        "image sizes differ"
    );
    a.data
        .iter()
        .zip(&b.data)
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0)
}

/// `n` synthetic JPEG samples in memory (labels = index % 10).
pub fn jpeg_samples(n: usize, seed: u64) -> Vec<(Vec<u8>, i64)> {
    (0..n as u64)
        .map(|i| (encode_jpeg(&render_image(seed, i), 85), (i % 10) as i64))
        .collect()
}

pub fn jpeg_source(n: usize) -> InMemory {
    InMemory::new(jpeg_samples(n, 7))
}

/// The CPU path's result of one operator with given parameters.
pub fn cpu_apply(op: impl Into<Op>, p: OpParams, image: &Image) -> Image {
    let mut out = image.clone();
    op.into().apply_image(&p, &mut out, &mut Scratch::default());
    out
}

/// `n` random images of random sizes (a ragged batch), `min..=max` pixels a side.
pub fn ragged_images(r: &mut SampleRng, n: usize, min: u32, max: u32) -> Vec<Image> {
    (0..n)
        .map(|_| {
            let w = min + r.below(u64::from(max - min + 1)) as u32;
            let h = min + r.below(u64::from(max - min + 1)) as u32;
            random_image(r, w, h)
        })
        .collect()
}

/// A GPU kernel's u8 values against the CPU's: every value within `tolerance`, and at most 1% of
/// values off at all (a GPU may round a product or sum on a boundary the other way).
pub fn assert_u8_close(got: &[u8], want: &[u8], tolerance: u8, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    let mut off = 0;
    for (a, b) in got.iter().zip(want) {
        assert!(a.abs_diff(*b) <= tolerance, "{what}: gpu {a} cpu {b}");
        off += usize::from(a != b);
    }
    assert!(
        off * 100 <= got.len(),
        "{what}: {off} of {} values differ",
        got.len()
    );
}

/// `available`'s value, or None after printing "skipped: <reason>" — unless the environment
/// variable `require` is set (CI, scripts/gpu-check.sh), where a missing piece is a failure.
pub fn or_skip<T>(available: Result<T, String>, require: &str) -> Option<T> {
    match available {
        Ok(v) => Some(v),
        Err(reason) if std::env::var_os(require).is_some() => {
            panic!("{require} is set but {reason}")
        }
        Err(reason) => {
            eprintln!("skipped: {reason}");
            None
        }
    }
}

/// A hang detector for tests that must finish: if the guard is not dropped within `limit`, the
/// process reports `what` (and anything `detail` says) and exits with a failure, instead of
/// hanging the test run. It asserts no duration: the limit is far beyond any normal run.
pub struct Watchdog {
    done: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
}

pub fn watchdog(what: &str, limit: std::time::Duration) -> Watchdog {
    let done = std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
    let (flag, what) = (done.clone(), what.to_string());
    std::thread::spawn(move || {
        let (lock, cvar) = &*flag;
        let guard = lock.lock().unwrap();
        let (finished, _) = cvar.wait_timeout_while(guard, limit, |d| !*d).unwrap();
        if !*finished {
            eprintln!("watchdog: {what} did not finish within {limit:?}: it hung");
            std::process::exit(101);
        }
    });
    Watchdog { done }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let (lock, cvar) = &*self.done;
        *lock.lock().unwrap() = true;
        cvar.notify_all();
    }
}

/// Distance in units in the last place between two 16-bit float bit patterns (f16 or bf16),
/// ordered as integers so that neighbours across zero are one apart.
pub fn ulp_distance16(a: u16, b: u16) -> u32 {
    fn ordered(x: u16) -> i32 {
        if x & 0x8000 != 0 {
            -i32::from(x & 0x7fff)
        } else {
            i32::from(x)
        }
    }
    (ordered(a) - ordered(b)).unsigned_abs()
}

/// Compare two encoded tensors of `dtype` element by element: f16/bf16 bit patterns at most one
/// ulp apart (a NaN poison is far from any value), f32 within 1e-6 relative, u8 exact.
pub fn assert_tensor_within_one_ulp(got: &[u8], want: &[u8], dtype: sluice::DType, what: &str) {
    use sluice::DType;
    assert_eq!(got.len(), want.len(), "{what}: length");
    for j in 0..got.len() / dtype.size() {
        let (a, b) = (dtype.load(got, j), dtype.load(want, j));
        let ok = match dtype {
            DType::F16 | DType::Bf16 => {
                let bits = |t: &[u8]| u16::from_le_bytes([t[2 * j], t[2 * j + 1]]);
                let (ga, wb) = (bits(got), bits(want));
                !a.is_nan() && ulp_distance16(ga, wb) <= 1
            }
            DType::F32 => (a - b).abs() <= 1e-6 * b.abs().max(1.0),
            DType::U8 | DType::I32 => a == b,
        };
        assert!(
            ok,
            "{what} element {j}: got {a} want {b} (NaN or 255 = never written)"
        );
    }
}

/// A hand-written CPU cost profile for `ops` on a 16-core host (no GPU): per operator, CPU ns
/// per sample, bytes in and bytes out; decoded images of 480 KB.
pub fn cost_profile(ops: &[Op], costs: Vec<(f64, f64, f64)>) -> sluice::optimizer::CostProfile {
    sluice::optimizer::CostProfile {
        machine: "16 x test CPU".into(),
        dataset: "test".into(),
        pipeline: sluice::optimizer::profile::pipeline_key(ops),
        cpu_threads: 16,
        samples_measured: 64,
        dataset_len: 10_000,
        read_ns: 20e3,
        decode_ns: 1.2e6,
        window_decode_ns: None,
        scaled_decode_ns: None,
        decoded_bytes: 480e3,
        memcpy_gbps: 8.0,
        ops: costs
            .into_iter()
            .zip(ops)
            .map(
                |((cpu_ns, bytes_in, bytes_out), op)| sluice::optimizer::OpCost {
                    op: format!("{op:?}"),
                    cpu_ns,
                    bytes_in,
                    bytes_out,
                    gpu_ns: None,
                },
            )
            .collect(),
        gpu: None,
    }
}
