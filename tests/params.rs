//! Hand-checked values: random parameter sampling (RandomResizedCrop, ColorJitter) with a
//! scripted uniform source, and the ColorJitter / blur formulas on pixels worked out by hand
//! from torchvision's definitions.

use sluice::ops::{
    adjust_brightness, adjust_contrast, adjust_hue, adjust_saturation, gaussian_kernel,
    ColorJitter, CropBox, RandomResizedCrop,
};
use sluice::rng::Uniform;
use sluice::tensor::Image;

/// Plays back fixed uniforms, then panics if asked for more.
struct Script(Vec<f64>);

impl Uniform for Script {
    fn next_f64(&mut self) -> f64 {
        assert!(!self.0.is_empty(), "script ran out of numbers");
        self.0.remove(0)
    }
}

#[test]
fn rrc_first_attempt_accepted() {
    // 500x400: area 200000. scale = 0.08 + 0.92*0.5 = 0.54 -> 108000 px; log-ratio midpoint
    // -> aspect 1; w = h = round(sqrt(108000)) = round(328.63) = 329.
    // top = floor(0.5 * (400-329+1)) = 36; left = floor(0.25 * (500-329+1)) = 43.
    let mut script = Script(vec![0.5, 0.5, 0.5, 0.25]);
    let crop = RandomResizedCrop::new(224).draw(&mut script, 500, 400);
    assert_eq!(
        crop,
        CropBox {
            left: 43.0,
            top: 36.0,
            width: 329.0,
            height: 329.0,
            out_width: 224,
            out_height: 224
        }
    );
    assert!(script.0.is_empty());
}

#[test]
fn rrc_falls_back_to_central_crop_after_ten_attempts() {
    // 1000x100 (ratio 10): a crop of ~99000 px can never be at most 100 px tall, so all ten
    // attempts fail; fallback clamps the ratio to 4/3: h = 100, w = round(133.33) = 133,
    // left = (1000-133)//2 = 433, top = 0.
    let mut script = Script([0.99, 0.999].repeat(10));
    let crop = RandomResizedCrop::new(224).draw(&mut script, 1000, 100);
    assert_eq!(
        (crop.left, crop.top, crop.width, crop.height),
        (433.0, 0.0, 133.0, 100.0)
    );
    // Too tall (ratio 1/10): w = 100, h = round(100 / (3/4)) = 133, top = (1000-133)//2.
    let mut script = Script([0.99, 0.001].repeat(10));
    let crop = RandomResizedCrop::new(224).draw(&mut script, 100, 1000);
    assert_eq!(
        (crop.left, crop.top, crop.width, crop.height),
        (0.0, 433.0, 100.0, 133.0)
    );
}

#[test]
fn rrc_second_attempt_after_a_rejected_first() {
    // 300x200, attempt 1: scale 1.0 (u≈1), aspect 4/3 -> w = round(sqrt(60000*4/3)) = 283,
    // h = round(sqrt(45000)) = 212 > 200: rejected. Attempt 2: scale 0.08 + 0.92*0 = 0.08 ->
    // 4800 px, aspect 1 -> w = h = round(69.28) = 69; top = floor(0 * 132) = 0,
    // left = floor(0.999 * 232) = 231.
    let mut script = Script(vec![1.0 - 1e-12, 1.0 - 1e-12, 0.0, 0.5, 0.0, 0.999]);
    let crop = RandomResizedCrop::new(224).draw(&mut script, 300, 200);
    assert_eq!(
        (crop.left, crop.top, crop.width, crop.height),
        (231.0, 0.0, 69.0, 69.0)
    );
}

#[test]
fn jitter_parameters_follow_torchvision_ranges_and_order() {
    let jitter = ColorJitter::new(0.4, 0.4, 0.4, 0.1).with_probability(0.8);
    // apply: 0.5 < 0.8. randperm by Fisher-Yates: below(4)=0 swaps 3,0 -> [3,1,2,0];
    // below(3)=2 keeps; below(2)=0 swaps 1,0 -> [1,3,2,0]. Factors: brightness 0.6 + 0.8*0 =
    // 0.6, contrast 0.6 + 0.8*0.5 = 1.0, saturation 0.6 + 0.8*0.75 = 1.2,
    // hue -0.1 + 0.2*0.25 = -0.05.
    let mut script = Script(vec![0.5, 0.0, 0.99, 0.0, 0.0, 0.5, 0.75, 0.25]);
    let p = jitter.draw(&mut script);
    assert!(p.apply);
    assert_eq!(p.order, [1, 3, 2, 0]);
    let f = p.factors.map(|f| f.unwrap());
    let want = [0.6, 1.0, 1.2, -0.05];
    for (got, want) in f.iter().zip(want) {
        assert!((got - want).abs() < 1e-6, "{f:?} vs {want:?}");
    }
    // Not applied when the first draw is >= p.
    let mut script = Script(vec![0.85, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    assert!(!jitter.draw(&mut script).apply);
    // A disabled adjustment has no factor but still consumes its draw.
    let no_hue = ColorJitter::new(0.4, 0.0, 0.0, 0.0);
    let mut script = Script(vec![0.0; 8]);
    let p = no_hue.draw(&mut script);
    assert_eq!(p.factors[1..], [None, None, None]);
    assert!(script.0.is_empty());
}

fn pixels(px: &[[u8; 3]]) -> Image {
    Image::new(px.len() as u32, 1, px.concat())
}

#[test]
fn brightness_scales_clamps_and_truncates() {
    let mut img = pixels(&[[100, 200, 101]]);
    adjust_brightness(&mut img, 1.5);
    assert_eq!(img.data, [150, 255, 151]); // 151.5 truncates to 151
    let mut img = pixels(&[[101, 3, 0]]);
    adjust_brightness(&mut img, 0.5);
    assert_eq!(img.data, [50, 1, 0]);
}

#[test]
fn saturation_blends_with_truncated_luma() {
    // luma(255,0,0) = 0.2989*255 = 76.22 -> 76.
    let mut img = pixels(&[[255, 0, 0]]);
    adjust_saturation(&mut img, 0.0);
    assert_eq!(img.data, [76, 76, 76]);
    // luma(100,50,0) = 29.89 + 29.35 = 59.24 -> 59; 2x - 59 = (141, 41, -59 -> 0).
    let mut img = pixels(&[[100, 50, 0]]);
    adjust_saturation(&mut img, 2.0);
    assert_eq!(img.data, [141, 41, 0]);
}

#[test]
fn contrast_blends_with_mean_luma() {
    // Lumas 0 and 254 (0.9999*255 = 254.97 truncated): mean 127.
    // 0.5*0 + 0.5*127 = 63.5 -> 63; 0.5*255 + 63.5 = 191.
    let mut img = pixels(&[[0, 0, 0], [255, 255, 255]]);
    adjust_contrast(&mut img, 0.5);
    assert_eq!(img.data, [63, 63, 63, 191, 191, 191]);
}

#[test]
fn hue_rotates_primaries_and_keeps_greys() {
    let mut img = pixels(&[[255, 0, 0], [128, 128, 128]]);
    adjust_hue(&mut img, 1.0 / 3.0);
    assert_eq!(img.data, [0, 255, 0, 128, 128, 128]);
    let mut img = pixels(&[[255, 0, 0]]);
    adjust_hue(&mut img, 0.5);
    assert_eq!(img.data, [0, 255, 255]);
    let mut img = pixels(&[[0, 0, 255]]);
    adjust_hue(&mut img, -1.0 / 3.0);
    assert_eq!(img.data, [0, 255, 0]);
}

#[test]
fn gaussian_kernel_matches_hand_computed_weights() {
    // exp(-0.5) = 0.606531; sum = 2.213061 -> [0.274069, 0.451863, 0.274069].
    let k = gaussian_kernel(3, 1.0);
    for (got, want) in k.iter().zip([0.274069, 0.451863, 0.274069]) {
        assert!((got - want).abs() < 1e-6, "{k:?}");
    }
    let k = gaussian_kernel(23, 2.0);
    assert_eq!(k.len(), 23);
    assert!((k.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    assert!(k[11] > k[10] && k[10] == k[12]);
}
