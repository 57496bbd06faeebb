//! Deterministic ImageNet-like JPEG datasets, so tests and benchmarks need no download.
//!
//! Each image is a pure function of (seed, index): size 200–600 px with aspect ratio 3:4–4:3,
//! photo-like content (a colour gradient, multi-octave value noise with a 1/f falloff, a few
//! soft-edged shapes), JPEG quality 75–95 with 4:2:0 chroma subsampling.

pub mod audio;
pub mod text;

use crate::error::{Error, Result};
use crate::rng::{SampleRng, Uniform};
use crate::tensor::Image;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Stream ids used by the generator (distinct from pipeline operator ids by construction: the
/// generator keys its streams with its own seed).
const SIZE_STREAM: u32 = 1;
const CONTENT_STREAM: u32 = 2;

/// What to generate.
#[derive(Debug, Clone)]
pub struct DatasetSpec {
    pub images: usize,
    pub classes: usize,
    pub seed: u64,
    /// Photos with a long side of `N` to 1.1·`N` pixels; None: ImageNet-like, 200–600 px.
    pub long_side: Option<u32>,
}

impl Default for DatasetSpec {
    fn default() -> Self {
        DatasetSpec {
            images: 1024,
            classes: 10,
            seed: 0,
            long_side: None,
        }
    }
}

/// Smooth random lattice noise: values on a grid, bicubic-smoothstep interpolated.
struct Lattice {
    cols: usize,
    cell: f32,
    values: Vec<[f32; 3]>,
}

impl Lattice {
    fn new(rng: &mut SampleRng, width: u32, height: u32, cell: f32, chroma: f32) -> Self {
        let cols = (width as f32 / cell) as usize + 2;
        let rows = (height as f32 / cell) as usize + 2;
        let values = (0..cols * rows)
            .map(|_| {
                let l = rng.next_f64() as f32 * 2.0 - 1.0;
                std::array::from_fn(|_| l + chroma * (rng.next_f64() as f32 * 2.0 - 1.0))
            })
            .collect();
        Lattice { cols, cell, values }
    }

    fn sample(&self, x: f32, y: f32) -> [f32; 3] {
        let (gx, gy) = (x / self.cell, y / self.cell);
        let (ix, iy) = (gx as usize, gy as usize);
        let smooth = |t: f32| t * t * (3.0 - 2.0 * t);
        let (fx, fy) = (smooth(gx - ix as f32), smooth(gy - iy as f32));
        let v = |dx: usize, dy: usize| self.values[(iy + dy) * self.cols + ix + dx];
        let (a, b, c, d) = (v(0, 0), v(1, 0), v(0, 1), v(1, 1));
        std::array::from_fn(|k| {
            let top = a[k] + (b[k] - a[k]) * fx;
            let bottom = c[k] + (d[k] - c[k]) * fx;
            top + (bottom - top) * fy
        })
    }
}

fn pixel_hash(key: u64, x: u32, y: u32) -> u64 {
    let mut h = key ^ (u64::from(x) << 32 | u64::from(y));
    h = (h ^ (h >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    h = (h ^ (h >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The size of image `index` of the default dataset with `seed` (before encoding).
pub fn image_size(seed: u64, index: u64) -> (u32, u32) {
    size_within(seed, index, DEFAULT_LONG_SIDE)
}

/// The size of image `index` (before encoding), its long side in `long_side` (pixels).
fn size_within(seed: u64, index: u64, long_side: (f64, f64)) -> (u32, u32) {
    let mut rng = SampleRng::new(seed, 0, index, SIZE_STREAM);
    let long = rng.uniform(long_side.0, long_side.1);
    let aspect = rng.uniform((3.0f64 / 4.0).ln(), (4.0f64 / 3.0).ln()).exp();
    let (w, h) = if aspect >= 1.0 {
        (long, long / aspect)
    } else {
        (long * aspect, long)
    };
    let min = long_side.0.min(200.0);
    (w.round().max(min) as u32, h.round().max(min) as u32)
}

/// Render image `index` of the default dataset with `seed`.
pub fn render_image(seed: u64, index: u64) -> Image {
    render_sized(seed, index, DEFAULT_LONG_SIDE)
}

/// The default datasets' long side range (ImageNet-like).
const DEFAULT_LONG_SIDE: (f64, f64) = (200.0, 600.0);

/// Render image `index` with `seed`, its long side in `long_side`.
pub fn render_sized(seed: u64, index: u64, long_side: (f64, f64)) -> Image {
    let (w, h) = size_within(seed, index, long_side);
    let mut rng = SampleRng::new(seed, 0, index, CONTENT_STREAM);
    let colour = |rng: &mut SampleRng| -> [f32; 3] {
        std::array::from_fn(|_| rng.uniform(20.0, 235.0) as f32)
    };
    let (c0, c1) = (colour(&mut rng), colour(&mut rng));
    let angle = rng.uniform(0.0, std::f64::consts::TAU) as f32;
    let (dx, dy) = (angle.cos(), angle.sin());
    let diag = ((w * w + h * h) as f32).sqrt();
    // Octaves from a half-image blob down to ~3 px texture, amplitude falling as 1/f^0.85.
    let octaves: Vec<(Lattice, f32)> = (0..7)
        .map(|o| {
            let cell = (w.max(h) as f32 / 2f32.powi(o + 1)).max(3.0);
            let amp = 70.0 / 1.8f32.powi(o);
            (Lattice::new(&mut rng, w, h, cell, 0.35), amp)
        })
        .collect();
    struct Shape {
        cx: f32,
        cy: f32,
        r: f32,
        round: bool,
        colour: [f32; 3],
        alpha: f32,
    }
    let shapes: Vec<Shape> = (0..rng.below(6) + 2)
        .map(|_| Shape {
            cx: rng.uniform(0.0, f64::from(w)) as f32,
            cy: rng.uniform(0.0, f64::from(h)) as f32,
            r: rng.uniform(15.0, f64::from(w.min(h)) / 3.0) as f32,
            round: rng.bernoulli(0.5),
            colour: colour(&mut rng),
            alpha: rng.uniform(0.4, 0.9) as f32,
        })
        .collect();

    let mut data = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            let (fx, fy) = (x as f32, y as f32);
            let t = ((fx * dx + fy * dy) / diag + 1.0) * 0.5;
            let mut px: [f32; 3] = std::array::from_fn(|k| c0[k] + (c1[k] - c0[k]) * t);
            for s in &shapes {
                let d = if s.round {
                    ((fx - s.cx).powi(2) + (fy - s.cy).powi(2)).sqrt()
                } else {
                    (fx - s.cx).abs().max((fy - s.cy).abs())
                };
                // Soft 2-px edge, like a slightly defocused object.
                let cover = ((s.r - d) * 0.5 + 0.5).clamp(0.0, 1.0) * s.alpha;
                for (p, c) in px.iter_mut().zip(s.colour) {
                    *p += (c - *p) * cover;
                }
            }
            for (lattice, amp) in &octaves {
                let n = lattice.sample(fx, fy);
                for k in 0..3 {
                    px[k] += n[k] * amp;
                }
            }
            // Sensor-like grain: a cheap per-pixel hash, ±8 levels.
            let grain = (pixel_hash(seed ^ index, x, y) & 0xFF) as f32 * (16.0 / 255.0) - 8.0;
            data.extend(px.map(|v| (v + grain).round().clamp(0.0, 255.0) as u8));
        }
    }
    Image::new(w, h, data)
}

/// JPEG-encode an image at `quality` with 4:2:0 chroma subsampling.
pub fn encode_jpeg(image: &Image, quality: u8) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, quality);
    encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_2_0);
    encoder
        .encode(
            &image.data,
            image.width as u16,
            image.height as u16,
            jpeg_encoder::ColorType::Rgb,
        )
        .expect("encoding to memory cannot fail for valid sizes");
    out
}

/// Encoded bytes and class of image `index`.
pub fn generate_sample(spec: &DatasetSpec, index: u64) -> (Vec<u8>, usize) {
    let long_side = spec
        .long_side
        .map_or(DEFAULT_LONG_SIDE, |n| (f64::from(n), f64::from(n) * 1.1));
    let image = render_sized(spec.seed, index, long_side);
    let mut rng = SampleRng::new(spec.seed, 0, index, SIZE_STREAM + 100);
    let quality = 75 + rng.below(21) as u8;
    (
        encode_jpeg(&image, quality),
        (index % spec.classes as u64) as usize,
    )
}

fn class_dir(root: &Path, class: usize) -> PathBuf {
    root.join(format!("class_{class:03}"))
}

/// Write the dataset as `root/class_NNN/img_NNNNNN.jpg` (ImageFolder layout), in parallel.
/// `progress` is called with the number of images written so far.
pub fn write_dataset(
    root: &Path,
    spec: &DatasetSpec,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<()> {
    write_class_files(root, spec.images, spec.classes, "image", progress, &|i| {
        let (bytes, class) = generate_sample(spec, i);
        Ok((class, format!("img_{i:06}.jpg"), bytes))
    })?;
    // Written last: its presence marks a complete dataset (see `ensure_dataset`).
    let marker = root.join(".complete");
    std::fs::write(&marker, marker_text(spec))
        .map_err(|e| Error::io(marker.display().to_string(), e))
}

/// What `.complete` says about the dataset it marks.
fn marker_text(spec: &DatasetSpec) -> String {
    match spec.long_side {
        None => format!("{} {} {}\n", spec.images, spec.classes, spec.seed),
        Some(n) => format!("{} {} {} {n}\n", spec.images, spec.classes, spec.seed),
    }
}

/// Write `files` generated files as `root/class_NNN/NAME` in parallel: `make(i)` gives file
/// `i`'s class, name and bytes; `progress` gets the number written so far. `noun` names a file
/// in the error for an empty dataset.
pub(crate) fn write_class_files(
    root: &Path,
    files: usize,
    classes: usize,
    noun: &str,
    progress: &(dyn Fn(u64) + Sync),
    make: &(dyn Fn(u64) -> Result<(usize, String, Vec<u8>)> + Sync),
) -> Result<()> {
    if classes == 0 || files == 0 {
        return Err(Error::Source(format!(
            "a dataset needs at least one {noun} and one class"
        )));
    }
    for class in 0..classes {
        let dir = class_dir(root, class);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(dir.display().to_string(), e))?;
    }
    let done = std::sync::atomic::AtomicU64::new(0);
    (0..files as u64).into_par_iter().try_for_each(|i| {
        let (class, name, bytes) = make(i)?;
        let path = class_dir(root, class).join(name);
        std::fs::write(&path, bytes).map_err(|e| Error::io(path.display().to_string(), e))?;
        progress(done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1);
        Ok(())
    })
}

/// Generate the dataset at `root` unless a complete one with the same spec is already there.
pub fn ensure_dataset(
    root: &Path,
    spec: &DatasetSpec,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<bool> {
    let marker = root.join(".complete");
    let want = marker_text(spec);
    if std::fs::read_to_string(&marker).is_ok_and(|s| s == want) {
        return Ok(false);
    }
    write_dataset(root, spec, progress)?;
    Ok(true)
}
