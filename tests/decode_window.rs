//! Window decode is exact: for JPEGs of every chroma subsampling, odd sizes, restart intervals,
//! progressive, grayscale and CMYK files, the pixels of any requested rectangle decoded by window
//! equal the same rectangle of the full decode, byte for byte, at full size and at each
//! DCT-domain scale (1/2, 1/4, 1/8).

mod common;

use jpeg_encoder::{ColorType, Encoder, SamplingFactor};
use sluice::ops::{DecodeImage, Decoded, Rect, Region};
use sluice::rng::{SampleRng, Uniform};
use sluice::tensor::Image;

/// Photo-like content (smooth gradients, hard edges and noise), so chroma upsampling and the IDCT
/// have real work at every block edge.
fn content(rng: &mut SampleRng, width: u32, height: u32, channels: usize) -> Vec<u8> {
    let mut data = Vec::with_capacity(width as usize * height as usize * channels);
    let (fx, fy) = (rng.uniform(0.01, 0.2), rng.uniform(0.01, 0.2));
    for y in 0..height {
        for x in 0..width {
            let edge = if (x / 7 + y / 5) % 3 == 0 { 90.0 } else { 0.0 };
            for c in 0..channels {
                let wave = ((x as f64 * fx + c as f64).sin() + (y as f64 * fy).cos()) * 60.0;
                let noise = f64::from(rng.next_u32() % 24);
                data.push((100.0 + wave + edge + noise).clamp(0.0, 255.0) as u8);
            }
        }
    }
    data
}

struct Case {
    name: String,
    width: u32,
    height: u32,
    bytes: Vec<u8>,
}

fn encode(
    rng: &mut SampleRng,
    width: u32,
    height: u32,
    color: ColorType,
    sampling: SamplingFactor,
    progressive: bool,
    restart: u16,
) -> Case {
    let channels = match color {
        ColorType::Luma => 1,
        ColorType::Cmyk | ColorType::CmykAsYcck => 4,
        _ => 3,
    };
    let pixels = content(rng, width, height, channels);
    let mut bytes = Vec::new();
    let mut encoder = Encoder::new(&mut bytes, 88);
    encoder.set_sampling_factor(sampling);
    encoder.set_progressive(progressive);
    encoder.set_restart_interval(restart);
    encoder
        .encode(&pixels, width as u16, height as u16, color)
        .unwrap();
    Case {
        name: format!(
            "{width}x{height} {color:?} {sampling:?} progressive={progressive} restart={restart}"
        ),
        width,
        height,
        bytes,
    }
}

fn cases(rng: &mut SampleRng) -> Vec<Case> {
    use SamplingFactor::*;
    let mut cases = Vec::new();
    let sizes = [(97, 61), (160, 120), (333, 211), (64, 301)];
    for (i, sampling) in [R_4_4_4, R_4_2_2, R_4_2_0, R_4_4_0, R_4_1_1, R_4_4_1]
        .into_iter()
        .enumerate()
    {
        for (j, &(w, h)) in sizes.iter().enumerate() {
            let progressive = (i + j) % 3 == 0;
            let restart = if (i + j) % 2 == 0 { 0 } else { 3 };
            cases.push(encode(
                rng,
                w,
                h,
                ColorType::Rgb,
                sampling,
                progressive,
                restart,
            ));
        }
    }
    cases.push(encode(rng, 131, 77, ColorType::Luma, R_4_4_4, false, 0));
    cases.push(encode(rng, 131, 77, ColorType::Luma, R_4_4_4, true, 2));
    cases.push(encode(rng, 90, 70, ColorType::Cmyk, R_4_4_4, false, 0));
    cases.push(encode(
        rng,
        90,
        70,
        ColorType::CmykAsYcck,
        R_4_2_0,
        false,
        0,
    ));
    cases
}

fn crop(image: &Image, rect: Rect) -> Vec<u8> {
    let mut out = Vec::new();
    let stride = image.width as usize * 3;
    for y in rect.top..rect.top + rect.height {
        let start = y as usize * stride + rect.left as usize * 3;
        out.extend_from_slice(&image.data[start..start + rect.width as usize * 3]);
    }
    out
}

fn random_rect(rng: &mut SampleRng, width: u32, height: u32) -> Rect {
    let w = 1 + rng.below(u64::from(width)) as u32;
    let h = 1 + rng.below(u64::from(height)) as u32;
    Rect {
        left: rng.below(u64::from(width - w) + 1) as u32,
        top: rng.below(u64::from(height - h) + 1) as u32,
        width: w,
        height: h,
    }
}

/// Decode `case` at 1/`shrink` scale, whole or the window `rect` asks for.
fn decode_at(
    decoder: &DecodeImage,
    case: &Case,
    shrink: u32,
    rect: Option<Rect>,
    out: &mut Image,
) -> Decoded {
    decoder
        .decode_region(&case.bytes, out, |w, h| {
            assert_eq!((w, h), (case.width, case.height), "{}", case.name);
            Some(Region {
                rect: rect.unwrap_or(Rect::full(w.div_ceil(shrink), h.div_ceil(shrink))),
                shrink,
            })
        })
        .unwrap_or_else(|e| panic!("{} 1/{shrink} {rect:?}: {e}", case.name))
}

/// At full size and at each DCT-domain scale, every rectangle decoded by window equals the same
/// rectangle of the whole image decoded at that scale.
#[test]
fn every_rectangle_decoded_by_window_equals_the_full_decode() {
    let seed = common::test_seed();
    let mut rng = common::rng(seed, 1);
    let decoder = DecodeImage::default();
    let (mut full, mut part) = (Image::default(), Image::default());
    let mut windows = [0; 4];
    for case in cases(&mut rng) {
        for (s, shrink) in [1u32, 2, 4, 8].into_iter().enumerate() {
            let (width, height) = (case.width.div_ceil(shrink), case.height.div_ceil(shrink));
            let whole = decode_at(&decoder, &case, shrink, None, &mut full);
            assert_eq!(whole.shrink, shrink, "{}", case.name);
            assert_eq!((full.width, full.height), (width, height), "{}", case.name);
            let rects = if shrink == 1 { 40 } else { 15 };
            for k in 0..rects {
                // Poison: whatever the window decode does not write shows up as a difference.
                part.data.iter_mut().for_each(|p| *p = 0xA5);
                // The first rectangles touch the edges and corners; the rest are random.
                let rect = match k {
                    0 => Rect::full(width, height),
                    1 => Rect {
                        left: width - 1,
                        top: height - 1,
                        width: 1,
                        height: 1,
                    },
                    2 if width > 16 && height > 16 => Rect {
                        left: 8,
                        top: 8,
                        width: width - 16,
                        height: height - 16,
                    },
                    _ => random_rect(&mut rng, width, height),
                };
                let at = decode_at(&decoder, &case, shrink, Some(rect), &mut part);
                assert_eq!((part.width, part.height), (width, height));
                let w = at.window;
                assert!(
                    w.left <= rect.left
                        && w.top <= rect.top
                        && w.left + w.width >= rect.left + rect.width
                        && w.top + w.height >= rect.top + rect.height,
                    "{} 1/{shrink}: window {w:?} does not cover {rect:?}",
                    case.name,
                );
                windows[s] += usize::from(at.partial);
                assert!(
                    crop(&part, rect) == crop(&full, rect),
                    "{} 1/{shrink} {rect:?} (window {w:?}): pixels differ from the full decode",
                    case.name,
                );
            }
        }
    }
    // Every file here can be decoded by window; only the full-image rectangles are not windows.
    assert!(
        windows[0] > 900 && windows[1..].iter().all(|&n| n > 250),
        "too few rectangles were decoded by window: {windows:?}"
    );
}

#[test]
fn a_window_of_a_corrupt_file_is_an_error_like_the_full_decode() {
    let mut rng = common::rng(common::test_seed(), 2);
    let case = encode(
        &mut rng,
        200,
        150,
        ColorType::Rgb,
        SamplingFactor::R_4_2_0,
        false,
        0,
    );
    let decoder = DecodeImage::default();
    let mut out = Image::default();
    // Cut inside the entropy data, below the window's rows: the window decode never reaches the
    // cut, but the missing end-of-image marker gives it away.
    let cut = &case.bytes[..case.bytes.len() * 3 / 4];
    let full = decoder.decode(cut, &mut out).unwrap_err();
    let window = decoder
        .decode_window(cut, &mut out, |_, _| {
            Some(Rect {
                left: 10,
                top: 0,
                width: 50,
                height: 20,
            })
        })
        .unwrap_err();
    assert!(full.contains("corrupt JPEG data"), "{full}");
    assert!(window.contains("truncated"), "{window}");
}
