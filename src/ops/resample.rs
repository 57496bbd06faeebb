//! Crop + resize, the one resampling kernel behind RandomResizedCrop and Resize.
//!
//! Semantics: bilinear (triangle) filter with antialiasing: when shrinking, the filter support
//! widens by the scale factor (PIL's and torchvision's `antialias=True`). Sample centres map as
//! `src = left + (dst + 0.5) * scale`; weights are clipped to the whole source image, not the
//! crop box. The SIMD implementation is fast_image_resize (fixed-point weights), within 1 of the
//! f64 reference in [`crate::reference::resize_bilinear`].

use super::jpeg::Rect;
use crate::tensor::Image;
use fast_image_resize as fir;

/// A source region and the output size it is resampled to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CropBox {
    pub left: f64,
    pub top: f64,
    pub width: f64,
    pub height: f64,
    pub out_width: u32,
    pub out_height: u32,
}

impl CropBox {
    /// The whole of a `width`×`height` image.
    pub fn whole(width: u32, height: u32, out_width: u32, out_height: u32) -> Self {
        CropBox {
            left: 0.0,
            top: 0.0,
            width: f64::from(width),
            height: f64::from(height),
            out_width,
            out_height,
        }
    }

    /// This box on the image decoded at 1/`shrink` of its size (DCT-domain scaling maps source
    /// pixel x to x / shrink: each 8×8 block becomes a (8 / shrink)² block).
    pub fn shrunk(&self, shrink: u32) -> CropBox {
        let s = f64::from(shrink);
        CropBox {
            left: self.left / s,
            top: self.top / s,
            width: self.width / s,
            height: self.height / s,
            ..*self
        }
    }

    /// The largest DCT-domain shrink (1, 2, 4 or 8) that leaves at least one decoded pixel per
    /// output pixel on both axes, so the resize after it still only shrinks (PIL's `draft`
    /// rule).
    pub fn dct_shrink(&self) -> u32 {
        [8, 4, 2]
            .into_iter()
            .find(|&s| {
                self.width >= f64::from(s * self.out_width)
                    && self.height >= f64::from(s * self.out_height)
            })
            .unwrap_or(1)
    }

    /// The source pixels [`Resampler::resize`] may read for this box in a `width`×`height`
    /// image: the box widened by the filter's support (`max(scale, 1)` pixels for the triangle
    /// filter, plus one for rounding), since the weights are clipped to the image, not the box.
    /// Decoding only this rectangle (at its place) gives the same output as the whole image.
    pub fn reads(&self, width: u32, height: u32) -> Rect {
        self.reads_for(Rect::full(self.out_width, self.out_height), width, height)
    }

    /// The source pixels the output rectangle `out` of this resampling reads (see [`Self::reads`]).
    pub fn reads_for(&self, out: Rect, width: u32, height: u32) -> Rect {
        let axis = |start: f64, len: f64, out_size: u32, o0: u32, o1: u32, size: u32| {
            let scale = len / f64::from(out_size.max(1));
            let radius = scale.max(1.0);
            let (from, to) = (start + f64::from(o0) * scale, start + f64::from(o1) * scale);
            let lo = ((from - radius).floor() - 1.0).max(0.0) as u32;
            let hi = ((to + radius).ceil() + 1.0).min(f64::from(size)) as u32;
            (lo.min(size), hi.max(lo.min(size)))
        };
        let (left, right) = axis(
            self.left,
            self.width,
            self.out_width,
            out.left,
            out.left + out.width,
            width,
        );
        let (top, bottom) = axis(
            self.top,
            self.height,
            self.out_height,
            out.top,
            out.top + out.height,
            height,
        );
        Rect {
            left,
            top,
            width: right - left,
            height: bottom - top,
        }
    }
}

/// A reusable SIMD resizer (it keeps internal buffers between calls).
pub struct Resampler {
    inner: fir::Resizer,
    options: fir::ResizeOptions,
}

impl Default for Resampler {
    fn default() -> Self {
        Resampler {
            inner: fir::Resizer::new(),
            options: fir::ResizeOptions::new()
                .resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::Bilinear)),
        }
    }
}

impl Resampler {
    /// Resample `crop` of `src` into `dst` (resized to the crop's output size).
    pub fn resize(&mut self, src: &Image, crop: &CropBox, dst: &mut Image) {
        dst.width = crop.out_width;
        dst.height = crop.out_height;
        dst.data
            .resize(crop.out_width as usize * crop.out_height as usize * 3, 0);
        if src.width == 0 || src.height == 0 || dst.data.is_empty() {
            dst.data.fill(0);
            return;
        }
        let src_view =
            fir::images::ImageRef::new(src.width, src.height, &src.data, fir::PixelType::U8x3)
                .expect("image buffer matches its size");
        let mut dst_view = fir::images::Image::from_slice_u8(
            dst.width,
            dst.height,
            &mut dst.data,
            fir::PixelType::U8x3,
        )
        .expect("image buffer matches its size");
        let options = self
            .options
            .crop(crop.left, crop.top, crop.width, crop.height);
        self.inner
            .resize(&src_view, &mut dst_view, &options)
            .expect("pixel types match and crop box is inside the image");
    }
}

/// One axis of a crop + resize in the CPU resizer's fixed-point arithmetic (Pillow's, which
/// fast_image_resize follows): per output coordinate a run of source pixels and i16 weights, a
/// sum started at half a unit, shifted right by `precision`, clipped to u8. GPU kernels take these
/// tables so that they reproduce the CPU's bytes exactly.
#[derive(Debug, Clone, PartialEq)]
pub struct AxisWeights {
    pub precision: u32,
    /// Weights per output coordinate (unused slots are 0).
    pub window: usize,
    /// First source pixel of each output coordinate's run.
    pub starts: Vec<u32>,
    /// Length of each run.
    pub sizes: Vec<u32>,
    /// `window` weights per output coordinate.
    pub weights: Vec<i32>,
}

impl AxisWeights {
    /// Weights for resampling `[start, start + len)` of an axis of `in_size` pixels onto
    /// `out_size`. When the axis needs no resampling (same size, integer offset) the table is the
    /// identity, as the CPU resizer then copies.
    pub fn new(in_size: u32, start: f64, len: f64, out_size: u32) -> AxisWeights {
        if f64::from(out_size) == len && start == start.round() {
            return AxisWeights {
                precision: 8,
                window: 1,
                starts: (0..out_size).map(|o| start as u32 + o).collect(),
                sizes: vec![1; out_size as usize],
                weights: vec![256; out_size as usize],
            };
        }
        let scale = len / f64::from(out_size);
        let filter_scale = scale.max(1.0);
        let radius = filter_scale; // the triangle filter's support is 1
        let window = radius.ceil() as usize * 2 + 1;
        let mut starts = Vec::with_capacity(out_size as usize);
        let mut sizes = Vec::with_capacity(out_size as usize);
        let mut real = Vec::with_capacity(window * out_size as usize);
        for o in 0..out_size {
            let centre = start + (f64::from(o) + 0.5) * scale;
            let lo = (centre - radius).floor().max(0.0) as u32;
            let hi = (centre + radius).ceil().min(f64::from(in_size)) as u32;
            let mut first = lo;
            let mut run: Vec<f64> = Vec::with_capacity(window);
            for x in lo..hi {
                let d = ((f64::from(x) - (centre - 0.5)) / filter_scale).abs();
                let w = if d < 1.0 { 1.0 - d } else { 0.0 };
                if x == first && w == 0.0 {
                    first += 1; // no zero weights at the start of a run
                } else {
                    run.push(w);
                }
            }
            while run.last() == Some(&0.0) {
                run.pop();
            }
            let total: f64 = run.iter().sum();
            if total != 0.0 {
                run.iter_mut().for_each(|w| *w /= total);
            }
            starts.push(first);
            sizes.push(run.len() as u32);
            run.resize(window, 0.0);
            real.extend(run);
        }
        // The most bits (up to 22) that keep the largest weight within an i16.
        let max_weight = real.iter().copied().fold(0.0, f64::max);
        let mut precision = 0;
        for p in 0..22u32 {
            precision = p;
            if (max_weight * f64::from(1u32 << (p + 1))).round() >= f64::from(1u32 << 15) {
                break;
            }
        }
        let unit = f64::from(1u32 << precision);
        let weights = real
            .iter()
            .map(|w| i32::from((w * unit).round() as i16))
            .collect();
        AxisWeights {
            precision,
            window,
            starts,
            sizes,
            weights,
        }
    }

    /// The source pixels any output reads: (first, count).
    pub fn span(&self) -> (u32, u32) {
        let first = self.starts.iter().copied().min().unwrap_or(0);
        let end = self
            .starts
            .iter()
            .zip(&self.sizes)
            .map(|(s, n)| s + n)
            .max()
            .unwrap_or(first);
        (first, (end - first).max(1))
    }

    /// Output value `o` from source values `at(i)` (a scalar model of the kernel).
    pub fn apply(&self, o: usize, at: impl Fn(u32) -> u8) -> u8 {
        let mut sum = 1i32 << (self.precision - 1);
        for k in 0..self.sizes[o] {
            sum += self.weights[o * self.window + k as usize] * i32::from(at(self.starts[o] + k));
        }
        (sum >> self.precision).clamp(0, 255) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{SampleRng, Uniform};

    /// The fixed-point tables, applied vertical pass first as the CPU resizer does, give the
    /// resizer's bytes exactly: the contract the GPU kernels rely on.
    #[test]
    fn fixed_point_tables_reproduce_the_cpu_resizer_exactly() {
        let mut rng = SampleRng::new(5, 0, 0, 0);
        let mut resampler = Resampler::default();
        for case in 0..200 {
            let (w, h) = (1 + rng.below(120) as u32, 1 + rng.below(120) as u32);
            let data = (0..w * h * 3).map(|_| rng.next_u32() as u8).collect();
            let src = Image::new(w, h, data);
            let crop = if case % 3 == 0 {
                CropBox::whole(w, h, 1 + rng.below(90) as u32, 1 + rng.below(90) as u32)
            } else {
                let cw = 1 + rng.below(u64::from(w)) as u32;
                let ch = 1 + rng.below(u64::from(h)) as u32;
                CropBox {
                    left: rng.below(u64::from(w - cw) + 1) as f64,
                    top: rng.below(u64::from(h - ch) + 1) as f64,
                    width: f64::from(cw)
                        * if case % 2 == 0 {
                            1.0
                        } else {
                            rng.uniform(0.5, 1.0)
                        },
                    height: f64::from(ch),
                    out_width: 1 + rng.below(80) as u32,
                    out_height: 1 + rng.below(80) as u32,
                }
            };
            let mut want = Image::default();
            resampler.resize(&src, &crop, &mut want);
            let hx = AxisWeights::new(w, crop.left, crop.width, crop.out_width);
            let vy = AxisWeights::new(h, crop.top, crop.height, crop.out_height);
            for y in 0..crop.out_height as usize {
                for x in 0..crop.out_width as usize {
                    for c in 0..3 {
                        let column =
                            |sx: u32| vy.apply(y, |sy| src.data[((sy * w + sx) * 3) as usize + c]);
                        let got = hx.apply(x, column);
                        let i = (y * crop.out_width as usize + x) * 3 + c;
                        assert_eq!(got, want.data[i], "case {case} {crop:?} at ({x}, {y}, {c})");
                    }
                }
            }
        }
    }
}
