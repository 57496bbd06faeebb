//! Decoded pixels against an independent decoder: small JPEGs (4:2:0 with odd sizes, 4:2:2,
//! 4:4:4, grayscale) and PNGs (RGB, gray) whose RGB pixels Pillow (libjpeg-turbo, zlib) decoded,
//! committed under tests/fixtures/decode (made by make.py there). Catches channel-order, chroma
//! upsampling and color-conversion mistakes that a round trip through our own encoder would not.
//! sluice decodes JPEG with libjpeg-turbo too (accurate integer IDCT, fancy upsampling, as Pillow
//! does), so every fixture must match exactly.

use sluice::ops::DecodeImage;
use sluice::tensor::Image;
use std::path::PathBuf;

fn fixtures() -> Vec<(String, PathBuf, u32, u32)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/decode");
    let manifest = std::fs::read_to_string(dir.join("manifest.csv")).unwrap();
    manifest
        .lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            assert_eq!(f.len(), 4, "manifest line {line:?}");
            (
                f[0].to_string(),
                dir.join(f[1]),
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn decoded_pixels_match_an_independent_decoder() {
    let cases = fixtures();
    assert_eq!(cases.len(), 6, "every fixture is listed");
    let decoder = DecodeImage::default();
    for (name, path, width, height) in cases {
        let bytes = std::fs::read(&path).unwrap();
        let want = std::fs::read(path.with_extension("rgb")).unwrap();
        let mut got = Image::default();
        decoder
            .decode(&bytes, &mut got)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((got.width, got.height), (width, height), "{name}: size");
        assert_eq!(got.data.len(), want.len(), "{name}: bytes");
        let diffs: Vec<u8> = got
            .data
            .iter()
            .zip(&want)
            .map(|(a, b)| a.abs_diff(*b))
            .collect();
        let max = diffs.iter().copied().max().unwrap_or(0);
        let mean = diffs.iter().map(|&d| f64::from(d)).sum::<f64>() / diffs.len() as f64;
        eprintln!("{name}: max |diff| {max}, mean {mean:.3}");
        assert!(got.data == want, "{name}: pixels differ (max {max})");
    }
}
