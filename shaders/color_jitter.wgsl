// ColorJitter on packed u8 RGB images, one adjustment "slot" per dispatch: in slot k each sample
// applies the k-th adjustment of its own random order (0 brightness, 1 contrast, 2 saturation,
// 3 hue, 4 none). Formulas as src/ops/color_jitter.rs (torchvision's): clamp to [0, 255] then
// truncate; hue through HSV and back as floor(x * 255.999).
// Each invocation owns 4 pixels = 12 bytes = 3 whole words, so no two invocations write the same
// word. Contrast needs the mean truncated luma of the image as it is at that slot: `luma_sum`
// accumulates it per sample before `apply` runs.

struct Params {
    // 4-pixel groups per sample, pixels per sample, words between samples, this slot.
    groups: u32,
    pixels: u32,
    stride_words: u32,
    slot: u32,
};

@group(0) @binding(0) var<storage, read_write> img: array<u32>;
@group(0) @binding(1) var<storage, read> order: array<u32>;
@group(0) @binding(2) var<storage, read> factors: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> sums: array<atomic<u32>>;
@group(0) @binding(4) var<uniform> p: Params;

fn luma(c: vec3<f32>) -> f32 {
    return floor(0.2989 * c.x + 0.587 * c.y + 0.114 * c.z);
}

fn get_byte(w: array<u32, 3>, i: u32) -> f32 {
    return f32((w[i / 4u] >> ((i % 4u) * 8u)) & 0xFFu);
}

fn load_words(s: u32, g: u32) -> array<u32, 3> {
    let base = s * p.stride_words + g * 3u;
    return array<u32, 3>(img[base], img[base + 1u], img[base + 2u]);
}

@compute @workgroup_size(64, 1, 1)
fn luma_sum(@builtin(global_invocation_id) id: vec3<u32>) {
    let g = id.x;
    let s = id.y;
    if (g >= p.groups || order[s * 4u + p.slot] != 1u) {
        return;
    }
    let w = load_words(s, g);
    var total = 0u;
    for (var k = 0u; k < 4u; k = k + 1u) {
        if (g * 4u + k < p.pixels) {
            let c = vec3<f32>(get_byte(w, k * 3u), get_byte(w, k * 3u + 1u), get_byte(w, k * 3u + 2u));
            total = total + u32(luma(c));
        }
    }
    atomicAdd(&sums[s], total);
}

fn blend(x: vec3<f32>, other: vec3<f32>, f: f32) -> vec3<f32> {
    return floor(clamp(f * x + (1.0 - f) * other, vec3<f32>(0.0), vec3<f32>(255.0)));
}

fn wrap_unit(x: f32) -> f32 {
    return x - floor(x);
}

fn hue_shift(c: vec3<f32>, shift: f32) -> vec3<f32> {
    let rgb = c / 255.0;
    let maxc = max(rgb.x, max(rgb.y, rgb.z));
    let minc = min(rgb.x, min(rgb.y, rgb.z));
    let eqc = maxc == minc;
    let cr = maxc - minc;
    let s = cr / select(maxc, 1.0, eqc);
    let div = select(cr, 1.0, eqc);
    let rc = (maxc - rgb.x) / div;
    let gc = (maxc - rgb.y) / div;
    let bc = (maxc - rgb.z) / div;
    var h = select(4.0 + gc - rc, 2.0 + rc - bc, maxc == rgb.y);
    h = select(h, bc - gc, maxc == rgb.x);
    h = wrap_unit(wrap_unit(h / 6.0 + 1.0) + shift);
    let v = maxc;
    let i = floor(h * 6.0);
    let f = h * 6.0 - i;
    let pp = clamp(v * (1.0 - s), 0.0, 1.0);
    let q = clamp(v * (1.0 - s * f), 0.0, 1.0);
    let t = clamp(v * (1.0 - s * (1.0 - f)), 0.0, 1.0);
    let sector = u32(i) % 6u;
    var out = vec3<f32>(v, t, pp);
    if (sector == 1u) { out = vec3<f32>(q, v, pp); }
    if (sector == 2u) { out = vec3<f32>(pp, v, t); }
    if (sector == 3u) { out = vec3<f32>(pp, q, v); }
    if (sector == 4u) { out = vec3<f32>(t, pp, v); }
    if (sector == 5u) { out = vec3<f32>(v, pp, q); }
    return floor(clamp(out * 255.999, vec3<f32>(0.0), vec3<f32>(255.0)));
}

@compute @workgroup_size(64, 1, 1)
fn apply(@builtin(global_invocation_id) id: vec3<u32>) {
    let g = id.x;
    let s = id.y;
    if (g >= p.groups) {
        return;
    }
    let op = order[s * 4u + p.slot];
    if (op > 3u) {
        return;
    }
    let f = factors[s][op];
    let mean = f32(atomicLoad(&sums[s])) / f32(p.pixels);
    let w = load_words(s, g);
    var bytes: array<u32, 12>;
    for (var k = 0u; k < 4u; k = k + 1u) {
        var c = vec3<f32>(get_byte(w, k * 3u), get_byte(w, k * 3u + 1u), get_byte(w, k * 3u + 2u));
        if (g * 4u + k < p.pixels) {
            if (op == 0u) {
                c = blend(c, vec3<f32>(0.0), f);
            } else if (op == 1u) {
                c = blend(c, vec3<f32>(mean), f);
            } else if (op == 2u) {
                c = blend(c, vec3<f32>(luma(c)), f);
            } else {
                c = hue_shift(c, f);
            }
        }
        bytes[k * 3u] = u32(c.x);
        bytes[k * 3u + 1u] = u32(c.y);
        bytes[k * 3u + 2u] = u32(c.z);
    }
    let base = s * p.stride_words + g * 3u;
    for (var j = 0u; j < 3u; j = j + 1u) {
        img[base + j] = bytes[j * 4u] | (bytes[j * 4u + 1u] << 8u) | (bytes[j * 4u + 2u] << 16u)
            | (bytes[j * 4u + 3u] << 24u);
    }
}
