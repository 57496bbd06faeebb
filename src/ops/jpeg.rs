//! JPEG decoding with libjpeg-turbo 3 (the TurboJPEG 3 API of `turbojpeg-sys`), behind a small
//! safe wrapper: read the header, then decode the whole image or a window of it to RGB.
//!
//! Strictness: warnings (corrupt or truncated entropy data, premature end of file) stop the
//! decode and become errors, instead of libjpeg's grey fill. Progressive files are limited to
//! [`SCAN_LIMIT`] scans and every decode to [`MEMORY_LIMIT_MIB`] of working memory, against
//! decompression bombs; the pixel-count limits are checked by the caller on the header, before
//! any pixel buffer exists.
//!
//! Scaling: the IDCT can produce 1/2, 1/4 or 1/8 of the image's size directly (DCT-domain
//! scaling); a `shrink` of 2, 4 or 8 asks for that. The pixels then differ from a full decode
//! followed by a resize, so callers use it only where approximations are allowed.
//!
//! Windows: TurboJPEG decodes a cropping region by skipping the IDCT and colour conversion of
//! the blocks outside it (rows above it are only entropy-decoded). Its left edge must sit on an
//! iMCU boundary, and libjpeg documents that "fancy" chroma upsampling may treat the window's
//! left and right edges as image edges; [`window_for`] therefore widens a requested rectangle to
//! the iMCU boundary strictly left of it and one column past it, so every pixel of the rectangle
//! equals the full decode's (tested in `tests/decode_window.rs`).

use crate::tensor::Image;
use std::cell::RefCell;
use std::ffi::CStr;
use turbojpeg_sys as tj;

/// Most scans a progressive file may have (libjpeg-turbo's own tools use 500 for untrusted input).
pub const SCAN_LIMIT: i32 = 500;
/// Most working memory (MiB) libjpeg may allocate for one decode (coefficient buffers of
/// progressive files are the large ones: ~ 2 bytes per sample).
pub const MEMORY_LIMIT_MIB: i32 = 2048;

/// The DCT-domain scalings the decoder offers, as shrink factors (the size is divided by them).
pub const SHRINKS: [u32; 4] = [1, 2, 4, 8];

/// A side of `size` pixels decoded at 1/`shrink` scale: TurboJPEG's `TJSCALED`, ⌈size / shrink⌉.
pub fn scaled(size: u32, shrink: u32) -> u32 {
    size.div_ceil(shrink)
}

/// iMCU width per TurboJPEG subsampling code (444, 422, 420, gray, 440, 411, 441): turbojpeg.h's
/// `tjMCUWidth`, which is a `static` array in the header and so not linkable.
const MCU_WIDTH: [u32; 7] = [8, 16, 16, 8, 8, 32, 8];

/// What the header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JpegHeader {
    pub width: u32,
    pub height: u32,
    /// iMCU width in pixels, or None where the subsampling is not one TurboJPEG names (then
    /// windows are not available and the whole image is decoded).
    pub mcu_width: Option<u32>,
    /// CMYK or YCCK: decoded as CMYK and converted.
    pub cmyk: bool,
    pub lossless: bool,
}

/// A rectangle of the image, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rect {
    pub left: u32,
    pub top: u32,
    pub width: u32,
    pub height: u32,
}

impl Rect {
    pub fn full(width: u32, height: u32) -> Self {
        Rect {
            left: 0,
            top: 0,
            width,
            height,
        }
    }

    fn right(&self) -> u32 {
        self.left + self.width
    }

    fn bottom(&self) -> u32 {
        self.top + self.height
    }
}

/// One TurboJPEG decompressor, created with its limits set.
struct Handle(tj::tjhandle);

impl Handle {
    fn new() -> Result<Handle, String> {
        // SAFETY: tj3Init has no preconditions; a null return is checked.
        let raw = unsafe { tj::tj3Init(tj::TJINIT_TJINIT_DECOMPRESS as i32) };
        if raw.is_null() {
            return Err("libjpeg-turbo could not create a decompressor".into());
        }
        let handle = Handle(raw);
        handle.set(tj::TJPARAM_TJPARAM_STOPONWARNING, 1)?;
        handle.set(tj::TJPARAM_TJPARAM_SCANLIMIT, SCAN_LIMIT)?;
        handle.set(tj::TJPARAM_TJPARAM_MAXMEMORY, MEMORY_LIMIT_MIB)?;
        Ok(handle)
    }

    fn set(&self, param: tj::TJPARAM, value: i32) -> Result<(), String> {
        // SAFETY: the handle is live; an unknown parameter is an error return, not UB.
        match unsafe { tj::tj3Set(self.0, param as i32, value) } {
            0 => Ok(()),
            _ => Err(self.error()),
        }
    }

    fn get(&self, param: tj::TJPARAM) -> i32 {
        // SAFETY: the handle is live.
        unsafe { tj::tj3Get(self.0, param as i32) }
    }

    fn error(&self) -> String {
        // SAFETY: tj3GetErrorStr returns a NUL-terminated string owned by the handle.
        let message = unsafe { CStr::from_ptr(tj::tj3GetErrorStr(self.0)) };
        message.to_string_lossy().trim().replace('\n', " ")
    }

    fn header(&self, bytes: &[u8]) -> Result<JpegHeader, String> {
        // SAFETY: the pointer and length describe `bytes`, which outlives the call.
        let rc =
            unsafe { tj::tj3DecompressHeader(self.0, bytes.as_ptr(), bytes.len() as tj::size_t) };
        if rc != 0 {
            return Err(format!("corrupt JPEG header: {}", self.error()));
        }
        let precision = self.get(tj::TJPARAM_TJPARAM_PRECISION);
        if precision != 8 {
            return Err(format!(
                "{precision}-bit JPEG samples are not supported (8-bit only)"
            ));
        }
        let (width, height) = (
            self.get(tj::TJPARAM_TJPARAM_JPEGWIDTH),
            self.get(tj::TJPARAM_TJPARAM_JPEGHEIGHT),
        );
        if width <= 0 || height <= 0 {
            return Err(format!(
                "JPEG header declares an empty size {width}×{height}"
            ));
        }
        let subsamp = self.get(tj::TJPARAM_TJPARAM_SUBSAMP);
        let colorspace = self.get(tj::TJPARAM_TJPARAM_COLORSPACE);
        let mcu_width = usize::try_from(subsamp)
            .ok()
            .and_then(|s| MCU_WIDTH.get(s).copied());
        Ok(JpegHeader {
            width: width as u32,
            height: height as u32,
            mcu_width,
            cmyk: colorspace == tj::TJCS_TJCS_CMYK as i32
                || colorspace == tj::TJCS_TJCS_YCCK as i32,
            lossless: self.get(tj::TJPARAM_TJPARAM_LOSSLESS) == 1,
        })
    }

    /// Decode `window` of the image scaled by 1/`shrink` (already valid for this file: see
    /// [`window_for`]) into its place in `out`, which becomes the whole scaled image's size
    /// (pixels outside the window are left as they were).
    fn decode(
        &self,
        bytes: &[u8],
        header: &JpegHeader,
        (window, shrink): (Rect, u32),
        out: &mut Image,
        cmyk: &mut Vec<u8>,
    ) -> Result<(), String> {
        let (width, height) = (scaled(header.width, shrink), scaled(header.height, shrink));
        // Always set: the decompressor is reused, and its scaling persists between images.
        let factor = tj::tjscalingfactor {
            num: 1,
            denom: shrink as i32,
        };
        // SAFETY: the handle is live; an unsupported factor is an error return.
        if unsafe { tj::tj3SetScalingFactor(self.0, factor) } != 0 {
            return Err(format!("JPEG scaling 1/{shrink}: {}", self.error()));
        }
        let full = window == Rect::full(width, height);
        let region = if full {
            tj::tjregion {
                x: 0,
                y: 0,
                w: 0,
                h: 0,
            }
        } else {
            tj::tjregion {
                x: window.left as i32,
                y: window.top as i32,
                w: window.width as i32,
                h: window.height as i32,
            }
        };
        // SAFETY: the handle is live; an invalid region is an error return.
        if unsafe { tj::tj3SetCroppingRegion(self.0, region) } != 0 {
            return Err(format!("JPEG window {window:?}: {}", self.error()));
        }
        let (full_w, full_h) = (width as usize, height as usize);
        out.width = width;
        out.height = height;
        out.data.resize(full_w * full_h * 3, 0);
        let (w, h) = (window.width as usize, window.height as usize);
        let (dst, offset, pitch, format, channels) = if header.cmyk {
            cmyk.resize(w * h * 4, 0);
            (&mut *cmyk, 0, w * 4, tj::TJPF_TJPF_CMYK, 4)
        } else {
            let offset = (window.top as usize * full_w + window.left as usize) * 3;
            (&mut out.data, offset, full_w * 3, tj::TJPF_TJPF_RGB, 3)
        };
        assert!(offset + (h - 1) * pitch + w * channels <= dst.len());
        // SAFETY: from `offset`, `dst` holds `h` rows of `w × channels` bytes `pitch` apart
        // (asserted above), and TurboJPEG writes only the window's rows and columns there.
        let rc = unsafe {
            tj::tj3Decompress8(
                self.0,
                bytes.as_ptr(),
                bytes.len() as tj::size_t,
                dst.as_mut_ptr().add(offset),
                pitch as i32,
                format,
            )
        };
        if rc != 0 {
            return Err(format!("corrupt JPEG data: {}", self.error()));
        }
        if header.cmyk {
            for (y, row) in cmyk.chunks_exact(w * 4).enumerate() {
                let start = ((window.top as usize + y) * full_w + window.left as usize) * 3;
                cmyk_to_rgb(row, &mut out.data[start..start + w * 3]);
            }
        }
        Ok(())
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the handle was created by tj3Init and is destroyed once.
        unsafe { tj::tj3Destroy(self.0) }
    }
}

/// Adobe CMYK JPEGs store inverted ink values, which libjpeg returns as stored: R = C·K / 255
/// (what Pillow and OpenCV compute), rounded.
fn cmyk_to_rgb(cmyk: &[u8], rgb: &mut [u8]) {
    let mul = |a: u8, b: u8| ((u32::from(a) * u32::from(b) + 127) / 255) as u8;
    for (p, q) in cmyk.chunks_exact(4).zip(rgb.chunks_exact_mut(3)) {
        q.copy_from_slice(&[mul(p[0], p[3]), mul(p[1], p[3]), mul(p[2], p[3])]);
    }
}

thread_local! {
    // One decompressor per thread, reused (creating one allocates libjpeg's state).
    static HANDLE: RefCell<Option<Handle>> = const { RefCell::new(None) };
    static CMYK: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Run `f` with this thread's decompressor. After an error the decompressor is dropped: a
/// decode abandoned inside the header leaves libjpeg's state half-read (the next file then fails
/// with "Bogus Huffman table definition"), so the next call starts from a fresh one.
fn with_handle<T>(f: impl FnOnce(&Handle) -> Result<T, String>) -> Result<T, String> {
    HANDLE.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(Handle::new()?);
        }
        let result = f(slot.as_ref().expect("created above"));
        if result.is_err() {
            *slot = None;
        }
        result
    })
}

/// Parse the header.
pub fn header(bytes: &[u8]) -> Result<JpegHeader, String> {
    with_handle(|h| h.header(bytes))
}

/// Whether this file can be decoded at 1/`shrink` scale: one of [`SHRINKS`], and 1 for lossless
/// files (no IDCT to scale).
pub fn check_shrink(header: &JpegHeader, shrink: u32) -> Result<(), String> {
    if !SHRINKS.contains(&shrink) || (shrink > 1 && header.lossless) {
        return Err(format!(
            "JPEG decode at 1/{shrink} scale is not available for this file (1, 1/2, 1/4 or \
             1/8 for lossy files)"
        ));
    }
    Ok(())
}

/// Decode `window` of the image whose header is `header`, scaled by 1/`shrink` (one of
/// [`SHRINKS`]; `window` is in the scaled image's pixels: see [`window_for`]), into its place in
/// `out` (RGB, the whole scaled image's size; outside the window `out` keeps what it held).
///
/// A window ending above the image's last row stops reading there: libjpeg-turbo skips to the
/// end without decoding the rest. So that a truncated file (the common corruption: a partial
/// download) is still an error, as in a full decode, the file must then end with an end-of-image
/// marker after its first scan. Bit errors below a window go unseen (nothing there is decoded).
pub fn decode(
    bytes: &[u8],
    header: &JpegHeader,
    (window, shrink): (Rect, u32),
    out: &mut Image,
) -> Result<(), String> {
    check_shrink(header, shrink)?;
    if window.bottom() < scaled(header.height, shrink) && !ends_after_scan(bytes) {
        return Err("corrupt JPEG data: truncated (no end-of-image marker after the scan)".into());
    }
    with_handle(|h| {
        CMYK.with(|c| h.decode(bytes, header, (window, shrink), out, &mut c.borrow_mut()))
    })
}

/// Whether an end-of-image marker (FF D9) follows the start of the first scan (FF DA). Marker
/// segments are walked by their lengths up to the scan, so an embedded thumbnail's EOI does not
/// count; inside entropy-coded data FF is always followed by 00 or a restart marker, so the
/// first FF D9 after the scan starts is the image's end.
fn ends_after_scan(bytes: &[u8]) -> bool {
    let mut at = 2; // past SOI
    loop {
        // Fill bytes (FF FF ...) may precede a marker.
        while bytes.get(at) == Some(&0xFF) && bytes.get(at + 1) == Some(&0xFF) {
            at += 1;
        }
        match (bytes.get(at), bytes.get(at + 1)) {
            (Some(0xFF), Some(0xDA)) => break,
            (Some(0xFF), Some(_)) => {
                let Some(len) = bytes.get(at + 2..at + 4) else {
                    return false;
                };
                at += 2 + usize::from(u16::from_be_bytes([len[0], len[1]]));
            }
            _ => return false,
        }
    }
    memchr::memmem::rfind(&bytes[at..], &[0xFF, 0xD9]).is_some()
}

/// The window to decode so that `want` (in the pixels of the image scaled by 1/`shrink`) comes
/// out exactly as in a full decode at that scale, or the whole image where this file cannot be
/// decoded by window (lossless, or a subsampling without an iMCU size).
pub fn window_for(header: &JpegHeader, want: Rect, shrink: u32) -> Rect {
    let full = Rect::full(scaled(header.width, shrink), scaled(header.height, shrink));
    let Some(mcu) = header.mcu_width.filter(|_| !header.lossless) else {
        return full;
    };
    if want.width == 0 || want.height == 0 || want.right() > full.width {
        return full;
    }
    // The iMCU shrinks with the image (TurboJPEG: TJSCALED(tjMCUWidth, scalingFactor)).
    let mcu = scaled(mcu, shrink);
    // Left: the iMCU boundary strictly left of the rectangle (or the image edge); right: one
    // column past it (or the image edge), so neither window edge is a pixel of `want`. The
    // window also spans more than one iMCU column: libjpeg-turbo decoded a one-iMCU-wide crop of
    // a 4:2:0 file with restart intervals that do not end at row ends (64×301, every 3 MCUs)
    // with pixels unlike the full decode's (found by tests/decode_window.rs, ~1 seed in 75).
    let left = want.left.saturating_sub(1) / mcu * mcu;
    let right = (want.right() + 1).max(left + mcu + 1).min(full.width);
    let window = Rect {
        left,
        top: want.top,
        width: right - left,
        height: want.height,
    };
    if window.bottom() > full.height {
        return full;
    }
    window
}
