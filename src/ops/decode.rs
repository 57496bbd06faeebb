//! DecodeImage: JPEG (libjpeg-turbo, see [`super::jpeg`]) and PNG (zune-png) to RGB u8, the whole
//! image or, for JPEG, only the window a following crop reads ([`DecodeImage::decode_window`]).
//!
//! Hostile input never panics and never allocates unbounded memory: the header is parsed first
//! and images whose declared size exceeds the limits are refused before any pixel buffer exists;
//! JPEG decoding is strict (truncated or corrupt entropy data is an error, not grey blocks); and
//! any panic inside a decoder is caught and reported as an error.

use super::jpeg::{self, Rect};
use super::spec::{Backend, OpKind, OpSpec, SizeRule, ValueKind};
use crate::tensor::Image;
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;

/// Limits that stop decompression bombs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest accepted width × height.
    pub max_pixels: u64,
    /// Largest accepted width or height.
    pub max_side: u32,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        // PIL's decompression-bomb threshold is ~89 Mpx; ImageNet's largest image is ~10 Mpx.
        DecodeLimits {
            max_pixels: 64 << 20,
            max_side: 16384,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct DecodeImage {
    pub limits: DecodeLimits,
}

/// What a following operator asks the decoder for: the rectangle `rect` of the image scaled by
/// 1/`shrink` (1: full size; 2, 4, 8: JPEG's DCT-domain scaling, approximate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub rect: Rect,
    pub shrink: u32,
}

/// Which part of an image a decode wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    /// The pixels written; the image has the whole (scaled) image's size either way.
    pub window: Rect,
    /// Whether that is less than the whole image.
    pub partial: bool,
    /// The scale the image was decoded at: its size is the file's divided by this (rounded
    /// up). 1 where the file cannot be scaled (PNG, lossless JPEG), whatever was asked.
    pub shrink: u32,
}

enum Format {
    Jpeg,
    Png,
}

fn sniff(bytes: &[u8]) -> Result<Format, String> {
    if bytes.is_empty() {
        return Err("empty file".into());
    }
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Ok(Format::Jpeg);
    }
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Ok(Format::Png);
    }
    let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
    Err(format!(
        "not a JPEG or PNG file (first bytes: {})",
        head.join(" ")
    ))
}

impl DecodeImage {
    pub fn new(limits: DecodeLimits) -> Self {
        DecodeImage { limits }
    }

    pub fn spec(&self) -> OpSpec {
        OpSpec {
            kind: OpKind::Decode,
            input: ValueKind::Encoded,
            output: ValueKind::ImageU8,
            size: SizeRule::DataDependent,
            bytes_per_output_pixel: 3,
            random: false,
            commutes_with: Vec::new(),
            backends: vec![Backend::Cpu],
            cpu_fuses_with: Vec::new(),
        }
    }

    fn check_size(&self, width: usize, height: usize) -> Result<(), String> {
        let limits = &self.limits;
        if width == 0 || height == 0 {
            return Err(format!("image declares an empty size {width}×{height}"));
        }
        if width > limits.max_side as usize
            || height > limits.max_side as usize
            || (width as u64) * (height as u64) > limits.max_pixels
        {
            return Err(format!(
                "image declares {width}×{height} pixels, over the limit ({} px, {} px per side)",
                limits.max_pixels, limits.max_side
            ));
        }
        Ok(())
    }

    fn options(&self) -> DecoderOptions {
        // The decoders' own size caps are lifted so that `check_size`, which runs after the
        // header and before any pixel buffer exists, gives the one clear message.
        DecoderOptions::default()
            .set_max_width(usize::MAX >> 1)
            .set_max_height(usize::MAX >> 1)
            .set_strict_mode(true)
    }

    /// Decode the whole image in `bytes` into `out` (its buffer is reused).
    pub fn decode(&self, bytes: &[u8], out: &mut Image) -> Result<(), String> {
        self.decode_window(bytes, out, |_, _| None).map(|_| ())
    }

    /// Decode the part of the image that `want` asks for, given the image's width and height
    /// from its header. `out` gets the whole image's size, and every pixel of the rectangle equals
    /// the full decode's; pixels outside the decoded window are left as `out` held them (stale).
    /// The window may be larger than the rectangle (iMCU alignment, or the whole image where a
    /// window cannot be decoded: PNG, lossless JPEG); [`Decoded`] says which it was.
    pub fn decode_window(
        &self,
        bytes: &[u8],
        out: &mut Image,
        want: impl FnOnce(u32, u32) -> Option<Rect>,
    ) -> Result<Decoded, String> {
        self.decode_region(bytes, out, |w, h| {
            want(w, h).map(|rect| Region { rect, shrink: 1 })
        })
    }

    /// [`Self::decode_window`] at a reduced scale: `want`, given the file's width and height,
    /// names a rectangle of the image scaled by 1/`shrink`. A JPEG is decoded at that scale (its
    /// size: ⌈width / shrink⌉ × ⌈height / shrink⌉) and the rectangle's pixels equal that scaled
    /// full decode's; PNG and lossless JPEG are decoded whole at full size ([`Decoded::shrink`]
    /// says which happened).
    pub fn decode_region(
        &self,
        bytes: &[u8],
        out: &mut Image,
        want: impl FnOnce(u32, u32) -> Option<Region>,
    ) -> Result<Decoded, String> {
        let format = sniff(bytes)?;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match format {
            Format::Jpeg => self.decode_jpeg(bytes, out, want),
            Format::Png => self.decode_png(bytes, out).map(|()| Decoded {
                window: Rect::full(out.width, out.height),
                partial: false,
                shrink: 1,
            }),
        }));
        result.unwrap_or_else(|_| Err("decoder panicked on malformed data".into()))
    }

    fn decode_jpeg(
        &self,
        bytes: &[u8],
        out: &mut Image,
        want: impl FnOnce(u32, u32) -> Option<Region>,
    ) -> Result<Decoded, String> {
        let header = jpeg::header(bytes)?;
        self.check_size(header.width as usize, header.height as usize)?;
        let region = want(header.width, header.height);
        // Lossless files have no IDCT to scale: decoded whole at full size.
        let shrink = match region {
            Some(r) if !header.lossless => r.shrink,
            _ => 1,
        };
        jpeg::check_shrink(&header, shrink)?;
        let full = Rect::full(
            jpeg::scaled(header.width, shrink),
            jpeg::scaled(header.height, shrink),
        );
        let window = match region {
            Some(r) => jpeg::window_for(&header, r.rect, shrink),
            None => full,
        };
        jpeg::decode(bytes, &header, (window, shrink), out)?;
        Ok(Decoded {
            window,
            partial: window != full,
            shrink,
        })
    }

    fn decode_png(&self, bytes: &[u8], out: &mut Image) -> Result<(), String> {
        let options = self.options().png_set_strip_to_8bit(true);
        let mut decoder = zune_png::PngDecoder::new_with_options(ZCursor::new(bytes), options);
        decoder
            .decode_headers()
            .map_err(|e| format!("corrupt PNG header: {e:?}"))?;
        let (w, h) = decoder.dimensions().ok_or("PNG header missing")?;
        self.check_size(w, h)?;
        let colorspace = decoder.colorspace().ok_or("PNG colour type missing")?;
        let pixels = match decoder
            .decode()
            .map_err(|e| format!("corrupt PNG data: {e:?}"))?
        {
            zune_core::result::DecodingResult::U8(v) => v,
            _ => return Err("PNG did not decode to 8-bit samples".into()),
        };
        let channels = colorspace.num_components();
        if pixels.len() != w * h * channels {
            return Err(format!(
                "PNG decoded to {} bytes, expected {}",
                pixels.len(),
                w * h * channels
            ));
        }
        out.width = w as u32;
        out.height = h as u32;
        out.data.clear();
        out.data.reserve(w * h * 3);
        match colorspace {
            ColorSpace::RGB => out.data.extend_from_slice(&pixels),
            ColorSpace::RGBA => {
                for p in pixels.chunks_exact(4) {
                    out.data.extend_from_slice(&p[..3]);
                }
            }
            ColorSpace::Luma | ColorSpace::LumaA => {
                for p in pixels.chunks_exact(channels) {
                    out.data.extend_from_slice(&[p[0]; 3]);
                }
            }
            other => return Err(format!("unsupported PNG colour space {other:?}")),
        }
        Ok(())
    }
}
