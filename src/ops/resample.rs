//! Crop + resize, the one resampling kernel behind RandomResizedCrop and Resize.
//!
//! Semantics: bilinear (triangle) filter with antialiasing: when shrinking, the filter support
//! widens by the scale factor (PIL's and torchvision's `antialias=True`). Sample centres map as
//! `src = left + (dst + 0.5) * scale`; weights are clipped to the whole source image, not the
//! crop box. The SIMD implementation is fast_image_resize (fixed-point weights), within 1 of the
//! f64 reference in [`crate::reference::resize_bilinear`].

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
