// ColorJitter on packed u8 RGB images (records: see prelude.wgsl), in place, one adjustment
// "slot" per dispatch: in slot k each sample applies the k-th adjustment of its own random order
// (0 brightness, 1 contrast, 2 saturation, 3 hue, 4 none). Order: extras 0..3; factors (f32
// bits): extras 4..7. Formulas as src/ops/color_jitter.rs (torchvision's): clamp to [0, 255]
// then truncate; hue through HSV and back as floor(x * 255.999). Contrast needs the mean
// truncated luma of the image as it is at that slot: `luma_sum` accumulates it into aux[s]
// before `jitter_apply` runs.

@group(0) @binding(3) var<storage, read_write> sums: array<atomic<u32>>;

fn luma(c: vec3<f32>) -> f32 {
    return floor(0.2989 * c.x + 0.587 * c.y + 0.114 * c.z);
}

fn pixel(s: u32, pix: u32) -> vec3<f32> {
    let i = pix * 3u;
    return vec3<f32>(f32(dst_byte(s, i)), f32(dst_byte(s, i + 1u)), f32(dst_byte(s, i + 2u)));
}

fn slot_op(s: u32) -> u32 {
    return field(s, EXTRA + p.slot);
}

@compute @workgroup_size(64, 1, 1)
fn luma_sum(@builtin(global_invocation_id) id: vec3<u32>) {
    let g = id.x;
    let s = id.y;
    if (s >= p.samples || g >= groups_of(s) || slot_op(s) != 1u) {
        return;
    }
    var total = 0u;
    for (var k = 0u; k < 4u; k = k + 1u) {
        let pix = g * 4u + k;
        if (pix < pixels_of(s)) {
            total = total + u32(luma(pixel(s, pix)));
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
fn jitter_apply(@builtin(global_invocation_id) id: vec3<u32>) {
    let g = id.x;
    let s = id.y;
    if (s >= p.samples || g >= groups_of(s)) {
        return;
    }
    let op = slot_op(s);
    if (op > 3u) {
        return;
    }
    let f = field_f(s, EXTRA + 4u + op);
    let mean = f32(atomicLoad(&sums[s])) / f32(pixels_of(s));
    var bytes: array<u32, 12>;
    for (var k = 0u; k < 4u; k = k + 1u) {
        var c = pixel(s, min(g * 4u + k, pixels_of(s) - 1u));
        if (op == 0u) {
            c = blend(c, vec3<f32>(0.0), f);
        } else if (op == 1u) {
            c = blend(c, vec3<f32>(mean), f);
        } else if (op == 2u) {
            c = blend(c, vec3<f32>(luma(c)), f);
        } else {
            c = hue_shift(c, f);
        }
        bytes[k * 3u] = u32(c.x);
        bytes[k * 3u + 1u] = u32(c.y);
        bytes[k * 3u + 2u] = u32(c.z);
    }
    store_group(s, g, bytes);
}
