// Grayscale, GaussianBlur, and the copy kernel behind CenterCrop and horizontal flip, on packed
// u8 RGB images with per-sample records (see prelude.wgsl). Formulas as src/ops/grayscale.rs
// (luma truncated to u8), src/ops/blur.rs (separable, reflect padding, f32 sums, rounded half
// to even) and src/ops/center_crop.rs (offsets round((in - out) / 2), zero padding).

@group(0) @binding(3) var<storage, read_write> aux: array<f32>;

fn group_pixel(s: u32, g: u32, k: u32) -> u32 {
    return min(g * 4u + k, pixels_of(s) - 1u);
}

// In place: sample s becomes its luma (3 equal channels) when its flag is set.
@compute @workgroup_size(64, 1, 1)
fn grayscale(@builtin(global_invocation_id) id: vec3<u32>) {
    let g = id.x;
    let s = id.y;
    if (s >= p.samples || g >= groups_of(s) || field(s, FLAG) == 0u) {
        return;
    }
    var v: array<u32, 12>;
    for (var k = 0u; k < 4u; k = k + 1u) {
        let i = group_pixel(s, g, k) * 3u;
        let l = 0.2989 * f32(dst_byte(s, i)) + 0.587 * f32(dst_byte(s, i + 1u)) + 0.114 * f32(dst_byte(s, i + 2u));
        let y = u32(floor(l));
        v[k * 3u] = y;
        v[k * 3u + 1u] = y;
        v[k * 3u + 2u] = y;
    }
    store_group(s, g, v);
}

// Horizontal blur pass: f32 rows into aux. Weights (p.taps of them) are the record's extras.
@compute @workgroup_size(64, 1, 1)
fn blur_h(@builtin(global_invocation_id) id: vec3<u32>) {
    let pix = id.x;
    let s = id.y;
    if (s >= p.samples || pix >= pixels_of(s) || field(s, FLAG) == 0u) {
        return;
    }
    let w = field(s, WIDTH);
    let x = pix % w;
    let y = pix / w;
    let half = p.taps / 2u;
    // As the CPU path: centre tap, then each symmetric pair summed before weighting.
    for (var c = 0u; c < 3u; c = c + 1u) {
        var sum = field_f(s, EXTRA + half) * f32(dst_byte(s, pix * 3u + c));
        for (var j = 1u; j <= half; j = j + 1u) {
            let l = reflect(i32(x) - i32(j), w);
            let r = reflect(i32(x) + i32(j), w);
            let pair = f32(dst_byte(s, (y * w + l) * 3u + c)) + f32(dst_byte(s, (y * w + r) * 3u + c));
            sum = sum + field_f(s, EXTRA + half + j) * pair;
        }
        aux[field(s, AUX_OFF) + pix * 3u + c] = sum;
    }
}

// Vertical blur pass from aux back into the image.
@compute @workgroup_size(64, 1, 1)
fn blur_v(@builtin(global_invocation_id) id: vec3<u32>) {
    let g = id.x;
    let s = id.y;
    if (s >= p.samples || g >= groups_of(s) || field(s, FLAG) == 0u) {
        return;
    }
    let w = field(s, WIDTH);
    let h = field(s, HEIGHT);
    let half = i32(p.taps / 2u);
    var v: array<u32, 12>;
    for (var k = 0u; k < 4u; k = k + 1u) {
        let pix = group_pixel(s, g, k);
        let x = pix % w;
        let y = pix / w;
        for (var c = 0u; c < 3u; c = c + 1u) {
            var sum = 0.0;
            for (var t = 0u; t < p.taps; t = t + 1u) {
                let sy = reflect(i32(y) + i32(t) - half, h);
                sum = sum + field_f(s, EXTRA + t) * aux[field(s, AUX_OFF) + (sy * w + x) * 3u + c];
            }
            v[k * 3u + c] = u32(round(clamp(sum, 0.0, 255.0)));
        }
    }
    store_group(s, g, v);
}

// Out of place: output pixel (x, y) is source pixel (x', y + top) with x' = x + left, or
// width - 1 - x + left when the flag (mirror) is set; outside the source it is 0. CenterCrop
// passes its integer offsets (negative when padding) as LEFT/TOP; a flip passes 0, 0.
@compute @workgroup_size(64, 1, 1)
fn copy_crop(@builtin(global_invocation_id) id: vec3<u32>) {
    let g = id.x;
    let s = id.y;
    if (s >= p.samples || g >= groups_of(s)) {
        return;
    }
    let w = field(s, WIDTH);
    let sw = i32(field(s, SRC_W));
    let sh = i32(field(s, SRC_H));
    let left = i32(field_f(s, LEFT));
    let top = i32(field_f(s, TOP));
    var v: array<u32, 12>;
    for (var k = 0u; k < 4u; k = k + 1u) {
        let pix = group_pixel(s, g, k);
        var x = pix % w;
        if (field(s, FLAG) != 0u) {
            x = w - 1u - x;
        }
        let sx = i32(x) + left;
        let sy = i32(pix / w) + top;
        let inside = sx >= 0 && sx < sw && sy >= 0 && sy < sh;
        for (var c = 0u; c < 3u; c = c + 1u) {
            var b = 0u;
            if (inside) {
                b = src_byte(s, (u32(sy) * u32(sw) + u32(sx)) * 3u + c);
            }
            v[k * 3u + c] = b;
        }
    }
    store_group(s, g, v);
}
