//! Plain, slow reference implementations: the oracles that the fast CPU kernels (and, later,
//! the GPU kernels) are tested against. Written for clarity in f64 over whole images, with
//! no shared code with the kernels they check.

use crate::ops::CropBox;
use crate::tensor::Image;

fn at(img: &Image, x: usize, y: usize, c: usize) -> f64 {
    f64::from(img.data[(y * img.width as usize + x) * 3 + c])
}

fn to_u8(v: f64) -> u8 {
    v.round().clamp(0.0, 255.0) as u8
}

/// Triangle-filter weights for one output coordinate along one axis (PIL's convolution resize:
/// the support widens with the downscale factor; weights clipped to the source and normalised).
fn axis_weights(
    in_size: usize,
    start: f64,
    len: f64,
    out_size: usize,
    o: usize,
) -> Vec<(usize, f64)> {
    let scale = len / out_size as f64;
    let support = scale.max(1.0);
    let centre = start + (o as f64 + 0.5) * scale;
    let mut weights: Vec<(usize, f64)> = (0..in_size)
        .map(|i| {
            let d = (i as f64 + 0.5 - centre) / support;
            (i, (1.0 - d.abs()).max(0.0))
        })
        .filter(|(_, w)| *w > 0.0)
        .collect();
    let total: f64 = weights.iter().map(|(_, w)| w).sum();
    for (_, w) in &mut weights {
        *w /= total;
    }
    weights
}

/// Antialiased bilinear crop + resize, exact in f64.
pub fn resize_bilinear(src: &Image, crop: &CropBox) -> Image {
    let (ow, oh) = (crop.out_width as usize, crop.out_height as usize);
    let mut out = Image::filled(crop.out_width, crop.out_height, 0);
    let wx: Vec<_> = (0..ow)
        .map(|x| axis_weights(src.width as usize, crop.left, crop.width, ow, x))
        .collect();
    for y in 0..oh {
        let wy = axis_weights(src.height as usize, crop.top, crop.height, oh, y);
        for (x, wxs) in wx.iter().enumerate() {
            for c in 0..3 {
                let mut v = 0.0;
                for &(sy, a) in &wy {
                    for &(sx, b) in wxs {
                        v += a * b * at(src, sx, sy, c);
                    }
                }
                out.data[(y * ow + x) * 3 + c] = to_u8(v);
            }
        }
    }
    out
}

pub fn hflip(src: &Image) -> Image {
    let mut out = src.clone();
    let w = src.width as usize;
    for y in 0..src.height as usize {
        for x in 0..w {
            for c in 0..3 {
                out.data[(y * w + x) * 3 + c] = src.data[(y * w + (w - 1 - x)) * 3 + c];
            }
        }
    }
    out
}

/// Luma per pixel, truncated (torchvision's uint8 rgb_to_grayscale).
pub fn gray(src: &Image) -> Vec<f64> {
    src.data
        .chunks_exact(3)
        .map(|p| {
            (0.2989 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2])).floor()
        })
        .collect()
}

pub fn grayscale(src: &Image) -> Image {
    let g = gray(src);
    let data = g.iter().flat_map(|&l| [l as u8; 3]).collect();
    Image::new(src.width, src.height, data)
}

/// torchvision `_blend(img1, img2, ratio)` on uint8: clamp then truncate.
fn blend(a: f64, b: f64, ratio: f64) -> u8 {
    (ratio * a + (1.0 - ratio) * b).clamp(0.0, 255.0).floor() as u8
}

pub fn brightness(src: &Image, f: f64) -> Image {
    let data = src
        .data
        .iter()
        .map(|&v| blend(f64::from(v), 0.0, f))
        .collect();
    Image::new(src.width, src.height, data)
}

pub fn contrast(src: &Image, f: f64) -> Image {
    let g = gray(src);
    let mean = g.iter().sum::<f64>() / g.len() as f64;
    let data = src
        .data
        .iter()
        .map(|&v| blend(f64::from(v), mean, f))
        .collect();
    Image::new(src.width, src.height, data)
}

pub fn saturation(src: &Image, f: f64) -> Image {
    let g = gray(src);
    let data = src
        .data
        .iter()
        .enumerate()
        .map(|(i, &v)| blend(f64::from(v), g[i / 3], f))
        .collect();
    Image::new(src.width, src.height, data)
}

/// Hue shift through HSV with the textbook (colorsys) formulas.
pub fn hue(src: &Image, shift: f64) -> Image {
    let mut out = src.clone();
    for px in out.data.chunks_exact_mut(3) {
        let [r, g, b] = [px[0], px[1], px[2]].map(|v| f64::from(v) / 255.0);
        let (maxc, minc) = (r.max(g).max(b), r.min(g).min(b));
        let v = maxc;
        let (mut h, s);
        if maxc == minc {
            h = 0.0;
            s = 0.0;
        } else {
            s = (maxc - minc) / maxc;
            let (rc, gc, bc) = (
                (maxc - r) / (maxc - minc),
                (maxc - g) / (maxc - minc),
                (maxc - b) / (maxc - minc),
            );
            h = if r == maxc {
                bc - gc
            } else if g == maxc {
                2.0 + rc - bc
            } else {
                4.0 + gc - rc
            };
            h = (h / 6.0).rem_euclid(1.0);
        }
        h = (h + shift).rem_euclid(1.0);
        let i = (h * 6.0).floor();
        let f = h * 6.0 - i;
        let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
        let rgb = match i as i64 % 6 {
            0 => [v, t, p],
            1 => [q, v, p],
            2 => [p, v, t],
            3 => [p, q, v],
            4 => [t, p, v],
            _ => [v, p, q],
        };
        for (o, c) in px.iter_mut().zip(rgb) {
            *o = (c * 255.999).floor().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// Direct 2-D Gaussian convolution with reflect padding (no separation), rounded.
pub fn gaussian_blur(src: &Image, kernel_size: usize, sigma: f64) -> Image {
    let half = (kernel_size as f64 - 1.0) / 2.0;
    let k1: Vec<f64> = (0..kernel_size)
        .map(|i| (-0.5 * ((i as f64 - half) / sigma).powi(2)).exp())
        .collect();
    let sum: f64 = k1.iter().sum();
    let k1: Vec<f64> = k1.iter().map(|v| v / sum).collect();
    let (w, h) = (src.width as i64, src.height as i64);
    let mirror = |i: i64, n: i64| -> usize {
        let mut i = i;
        while i < 0 || i >= n {
            i = if i < 0 { -i } else { 2 * (n - 1) - i };
        }
        i as usize
    };
    let r = (kernel_size / 2) as i64;
    let mut out = src.clone();
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                let mut v = 0.0;
                for ky in -r..=r {
                    for kx in -r..=r {
                        let wgt = k1[(ky + r) as usize] * k1[(kx + r) as usize];
                        v += wgt * at(src, mirror(x + kx, w), mirror(y + ky, h), c);
                    }
                }
                out.data[(y * w + x) as usize * 3 + c] = to_u8(v);
            }
        }
    }
    out
}

/// `(x/255 − mean)/std` in CHW f64.
pub fn normalize_chw(src: &Image, mean: [f64; 3], std: [f64; 3]) -> Vec<f64> {
    let plane = (src.width * src.height) as usize;
    let mut out = vec![0.0; plane * 3];
    for (i, px) in src.data.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (f64::from(px[c]) / 255.0 - mean[c]) / std[c];
        }
    }
    out
}

/// Centre crop with zero padding, pixel by pixel.
pub fn center_crop(src: &Image, out_w: u32, out_h: u32) -> Image {
    let mut out = Image::filled(out_w, out_h, 0);
    let off = |inp: u32, outp: u32| -> i64 {
        if inp >= outp {
            ((f64::from(inp) - f64::from(outp)) / 2.0).round_ties_even() as i64
        } else {
            -((i64::from(outp) - i64::from(inp)) / 2)
        }
    };
    let (dx, dy) = (off(src.width, out_w), off(src.height, out_h));
    for y in 0..i64::from(out_h) {
        for x in 0..i64::from(out_w) {
            let (sx, sy) = (x + dx, y + dy);
            if sx >= 0 && sy >= 0 && sx < i64::from(src.width) && sy < i64::from(src.height) {
                for c in 0..3 {
                    out.data[(y * i64::from(out_w) + x) as usize * 3 + c] =
                        src.data[(sy * i64::from(src.width) + sx) as usize * 3 + c];
                }
            }
        }
    }
    out
}
