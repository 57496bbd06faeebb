//! Normalize (torchvision ToTensor + Normalize): `(x/255 − mean) / std` per channel, written as
//! f32/f16/bf16 in CHW or HWC. Computed as `x · scale[c] + bias[c]` in f32 with
//! `scale = 1/(255·std)` and `bias = −mean/std`; every backend uses this exact formula.
//! Cast: the u8 values unchanged, converted to the target dtype and layout.

use super::spec::{Commute, OpKind, OpSpec, SizeRule, ValueKind};
use crate::tensor::{DType, Image, Layout};

pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

#[derive(Debug, Clone, PartialEq)]
pub struct Normalize {
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub dtype: DType,
    pub layout: Layout,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cast {
    pub dtype: DType,
    pub layout: Layout,
}

fn tensor_spec(kind: OpKind, dtype: DType, layout: Layout) -> OpSpec {
    OpSpec {
        kind,
        input: ValueKind::ImageU8,
        output: ValueKind::Tensor { dtype, layout },
        size: SizeRule::Same,
        bytes_per_output_pixel: 3 * dtype.size(),
        random: false,
        commutes_with: vec![(OpKind::RandomHorizontalFlip, Commute::Exact)],
        backends: OpSpec::ALL_BACKENDS.to_vec(),
        cpu_fuses_with: Vec::new(),
    }
}

/// Write `image` through the per-channel affine map `x · scale[c] + bias[c]` into `out`,
/// mirrored horizontally when `flip`, in `dtype` and `layout`.
fn write_affine(
    image: &Image,
    flip: bool,
    scale: [f32; 3],
    bias: [f32; 3],
    dtype: DType,
    layout: Layout,
    out: &mut [u8],
) {
    let (w, h) = (image.width as usize, image.height as usize);
    let plane = w * h;
    let es = dtype.size();
    debug_assert_eq!(out.len(), plane * 3 * es);
    if dtype == DType::F32 && layout == Layout::Chw && cfg!(target_endian = "little") {
        if let Ok(planes) = bytemuck::try_cast_slice_mut::<u8, f32>(out) {
            write_chw_f32(image, flip, scale, bias, planes);
            return;
        }
    }
    let mut row = vec![0f32; w * 3];
    for y in 0..h {
        let src = &image.data[y * w * 3..(y + 1) * w * 3];
        for x in 0..w {
            let sx = if flip { w - 1 - x } else { x };
            for c in 0..3 {
                let v = f32::from(src[sx * 3 + c]) * scale[c] + bias[c];
                match layout {
                    Layout::Hwc => row[x * 3 + c] = v,
                    Layout::Chw => row[c * w + x] = v,
                }
            }
        }
        match layout {
            Layout::Hwc => dtype.store(&row, &mut out[y * w * 3 * es..(y + 1) * w * 3 * es]),
            Layout::Chw => {
                for c in 0..3 {
                    let start = (c * plane + y * w) * es;
                    dtype.store(&row[c * w..(c + 1) * w], &mut out[start..start + w * es]);
                }
            }
        }
    }
}

/// The common case (f32 CHW into an aligned buffer), written plane-row by plane-row so it
/// vectorises. Same formula and rounding as the general path.
fn write_chw_f32(image: &Image, flip: bool, scale: [f32; 3], bias: [f32; 3], out: &mut [f32]) {
    let w = image.width as usize;
    let plane = w * image.height as usize;
    let (r_plane, rest) = out.split_at_mut(plane);
    let (g_plane, b_plane) = rest.split_at_mut(plane);
    let rows = r_plane
        .chunks_exact_mut(w)
        .zip(g_plane.chunks_exact_mut(w))
        .zip(b_plane.chunks_exact_mut(w))
        .zip(image.data.chunks_exact(w * 3));
    // One loop per direction, so each walks its outputs in order with no per-pixel index
    // arithmetic (the mirrored one writes the plane rows backwards).
    let pixel = |px: &[u8], r: &mut f32, g: &mut f32, b: &mut f32| {
        *r = f32::from(px[0]) * scale[0] + bias[0];
        *g = f32::from(px[1]) * scale[1] + bias[1];
        *b = f32::from(px[2]) * scale[2] + bias[2];
    };
    for (((r, g), b), src) in rows {
        let planes = r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut());
        if flip {
            for (((r, g), b), px) in planes.rev().zip(src.chunks_exact(3)) {
                pixel(px, r, g, b);
            }
        } else {
            for (((r, g), b), px) in planes.zip(src.chunks_exact(3)) {
                pixel(px, r, g, b);
            }
        }
    }
}

impl Normalize {
    /// ImageNet mean/std, f32, CHW: what torchvision's ResNet recipes feed the model.
    pub fn imagenet() -> Self {
        Normalize {
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
            dtype: DType::F32,
            layout: Layout::Chw,
        }
    }

    pub fn spec(&self) -> OpSpec {
        tensor_spec(OpKind::Normalize, self.dtype, self.layout)
    }

    pub fn scale_bias(&self) -> ([f32; 3], [f32; 3]) {
        let scale = std::array::from_fn(|c| 1.0 / (255.0 * self.std[c]));
        let bias = std::array::from_fn(|c| -self.mean[c] / self.std[c]);
        (scale, bias)
    }

    pub fn write(&self, image: &Image, flip: bool, out: &mut [u8]) {
        let (scale, bias) = self.scale_bias();
        write_affine(image, flip, scale, bias, self.dtype, self.layout, out);
    }
}

impl Cast {
    pub fn spec(&self) -> OpSpec {
        tensor_spec(OpKind::Cast, self.dtype, self.layout)
    }

    pub fn write(&self, image: &Image, flip: bool, out: &mut [u8]) {
        write_affine(
            image,
            flip,
            [1.0; 3],
            [0.0; 3],
            self.dtype,
            self.layout,
            out,
        );
    }
}
