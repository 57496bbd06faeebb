// Grayscale and GaussianBlur on packed u8 RGB images, in place, with per-sample parameters.
// Formulas as src/ops/grayscale.rs and src/ops/blur.rs: luma truncated to u8; blur separable
// with reflect padding, f32 sums, rounded half to even. Invocations that write own 4 pixels =
// 3 whole words, so no two of them touch the same word.

struct Params {
    groups: u32,
    pixels: u32,
    stride_words: u32,
    width: u32,
    height: u32,
    taps: u32,
    pad0: u32,
    pad1: u32,
};

@group(0) @binding(0) var<storage, read_write> img: array<u32>;
@group(0) @binding(1) var<storage, read> flags: array<u32>;
@group(0) @binding(2) var<storage, read> weights: array<f32>;
@group(0) @binding(3) var<storage, read_write> tmp: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

fn byte_at(s: u32, i: u32) -> u32 {
    let word = img[s * p.stride_words + i / 4u];
    return (word >> ((i % 4u) * 8u)) & 0xFFu;
}

fn reflect(i: i32, n: u32) -> u32 {
    if (n == 1u) {
        return 0u;
    }
    let period = 2 * (i32(n) - 1);
    var m = i % period;
    if (m < 0) {
        m = m + period;
    }
    if (m >= i32(n)) {
        m = period - m;
    }
    return u32(m);
}

// Write 12 values (4 pixels) into group g of sample s.
fn store_group(s: u32, g: u32, v: array<u32, 12>) {
    let base = s * p.stride_words + g * 3u;
    for (var j = 0u; j < 3u; j = j + 1u) {
        img[base + j] = v[j * 4u] | (v[j * 4u + 1u] << 8u) | (v[j * 4u + 2u] << 16u) | (v[j * 4u + 3u] << 24u);
    }
}

@compute @workgroup_size(64, 1, 1)
fn grayscale(@builtin(global_invocation_id) id: vec3<u32>) {
    let g = id.x;
    let s = id.y;
    if (g >= p.groups || flags[s] == 0u) {
        return;
    }
    var v: array<u32, 12>;
    for (var k = 0u; k < 4u; k = k + 1u) {
        let i = (g * 4u + k) * 3u;
        let l = 0.2989 * f32(byte_at(s, i)) + 0.587 * f32(byte_at(s, i + 1u)) + 0.114 * f32(byte_at(s, i + 2u));
        let y = u32(floor(l));
        if (g * 4u + k < p.pixels) {
            v[k * 3u] = y;
            v[k * 3u + 1u] = y;
            v[k * 3u + 2u] = y;
        } else {
            v[k * 3u] = byte_at(s, i);
            v[k * 3u + 1u] = byte_at(s, i + 1u);
            v[k * 3u + 2u] = byte_at(s, i + 2u);
        }
    }
    store_group(s, g, v);
}

@compute @workgroup_size(64, 1, 1)
fn blur_h(@builtin(global_invocation_id) id: vec3<u32>) {
    let pix = id.x;
    let s = id.y;
    if (pix >= p.pixels || flags[s] == 0u) {
        return;
    }
    let x = pix % p.width;
    let y = pix / p.width;
    let half = i32(p.taps / 2u);
    for (var c = 0u; c < 3u; c = c + 1u) {
        var sum = 0.0;
        for (var k = 0u; k < p.taps; k = k + 1u) {
            let sx = reflect(i32(x) + i32(k) - half, p.width);
            sum = sum + weights[s * p.taps + k] * f32(byte_at(s, (y * p.width + sx) * 3u + c));
        }
        tmp[(s * p.pixels + pix) * 3u + c] = sum;
    }
}

@compute @workgroup_size(64, 1, 1)
fn blur_v(@builtin(global_invocation_id) id: vec3<u32>) {
    let g = id.x;
    let s = id.y;
    if (g >= p.groups || flags[s] == 0u) {
        return;
    }
    let half = i32(p.taps / 2u);
    var v: array<u32, 12>;
    for (var k = 0u; k < 4u; k = k + 1u) {
        let pix = g * 4u + k;
        for (var c = 0u; c < 3u; c = c + 1u) {
            if (pix < p.pixels) {
                let x = pix % p.width;
                let y = pix / p.width;
                var sum = 0.0;
                for (var t = 0u; t < p.taps; t = t + 1u) {
                    let sy = reflect(i32(y) + i32(t) - half, p.height);
                    sum = sum + weights[s * p.taps + t] * tmp[(s * p.pixels + sy * p.width + x) * 3u + c];
                }
                v[k * 3u + c] = u32(round(clamp(sum, 0.0, 255.0)));
            } else {
                v[k * 3u + c] = byte_at(s, pix * 3u + c);
            }
        }
    }
    store_group(s, g, v);
}
