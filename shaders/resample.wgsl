// Crop + resize (antialiased bilinear) from a ragged u8 batch, the tensor write
// (normalize / cast, f32 / f16 / bf16 / u8, CHW / HWC, per-sample flip), and the two fused.
//
// Resample semantics as src/ops/resample.rs and the f64 oracle in src/reference.rs: output
// coordinate o samples the source at centre = start + (o + 0.5) * scale with a triangle filter
// widened by the downscale factor, weights clipped to the whole source image and normalised.
// Separable, vertical pass first with the intermediate rounded to u8, as fast_image_resize does
// for u8 images: resample_vertical writes (output rows × the crop's needed source columns) into
// aux; resample_horizontal (→ u8 image) or write_tensor in mode 1 (→ tensor, fused) finishes.

@group(0) @binding(3) var<storage, read_write> aux: array<f32>;

struct Window {
    first: i32,
    last: i32,
    centre: f32,
    support: f32,
};

fn window(o: u32, start: f32, len: f32, out_size: u32, lo: i32, hi: i32) -> Window {
    let scale = len / f32(out_size);
    let support = max(scale, 1.0);
    let centre = start + (f32(o) + 0.5) * scale;
    // Weights are non-zero only where |i + 0.5 - centre| < support.
    let first = max(i32(floor(centre - support - 0.5)), lo);
    let last = min(i32(ceil(centre + support - 0.5)), hi);
    return Window(first, last, centre, support);
}

fn weight(i: i32, w: Window) -> f32 {
    return max(1.0 - abs((f32(i) + 0.5 - w.centre) / w.support), 0.0);
}

fn src_pixel(s: u32, x: u32, y: i32) -> vec3<f32> {
    let i = (u32(y) * field(s, SRC_W) + x) * 3u;
    return vec3<f32>(f32(src_byte(s, i)), f32(src_byte(s, i + 1u)), f32(src_byte(s, i + 2u)));
}

// First pass, vertical (as the CPU resizer, fast_image_resize, does for u8 images): one
// invocation per (output row, kept source column) of sample id.y, rounded to u8 into aux.
@compute @workgroup_size(64, 1, 1)
fn resample_vertical(@builtin(global_invocation_id) id: vec3<u32>) {
    let s = id.y;
    let cols = field(s, COLS);
    let i = id.x;
    if (s >= p.samples || i >= field(s, HEIGHT) * cols) {
        return;
    }
    let x = field(s, COL0) + i % cols;
    let win = window(i / cols, field_f(s, TOP), field_f(s, CROP_H), field(s, HEIGHT), 0, i32(field(s, SRC_H)) - 1);
    var acc = vec3<f32>(0.0);
    var total = 0.0;
    for (var y = win.first; y <= win.last; y = y + 1) {
        let wt = weight(y, win);
        total = total + wt;
        acc = acc + wt * src_pixel(s, x, y);
    }
    let out = floor(clamp(acc / total, vec3<f32>(0.0), vec3<f32>(255.0)) + 0.5);
    let a = field(s, AUX_OFF) + i * 3u;
    aux[a] = out.x;
    aux[a + 1u] = out.y;
    aux[a + 2u] = out.z;
}

// Second pass, horizontal: channel c of output pixel (x, y) of sample s from the columns
// resample_vertical left in aux, rounded to u8.
fn resampled(s: u32, x: u32, y: u32, c: u32) -> f32 {
    let col0 = i32(field(s, COL0));
    let cols = field(s, COLS);
    let win = window(x, field_f(s, LEFT), field_f(s, CROP_W), field(s, WIDTH), col0, col0 + i32(cols) - 1);
    var acc = 0.0;
    var total = 0.0;
    for (var sx = win.first; sx <= win.last; sx = sx + 1) {
        let wt = weight(sx, win);
        total = total + wt;
        acc = acc + wt * aux[field(s, AUX_OFF) + (y * cols + u32(sx - col0)) * 3u + c];
    }
    return floor(clamp(acc / total, 0.0, 255.0) + 0.5);
}

// One invocation per 4-pixel group of the output image.
@compute @workgroup_size(64, 1, 1)
fn resample_horizontal(@builtin(global_invocation_id) id: vec3<u32>) {
    let s = id.y;
    let g = id.x;
    if (s >= p.samples || g >= groups_of(s)) {
        return;
    }
    let ow = field(s, WIDTH);
    var v: array<u32, 12>;
    for (var k = 0u; k < 4u; k = k + 1u) {
        let pix = min(g * 4u + k, pixels_of(s) - 1u);
        for (var c = 0u; c < 3u; c = c + 1u) {
            v[k * 3u + c] = u32(resampled(s, pix % ow, pix / ow, c));
        }
    }
    store_group(s, g, v);
}

// Round-to-nearest-even f32 → bf16 bits (as half::bf16::from_f32 does for finite values).
fn bf16_bits(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    return (b + 0x7FFFu + ((b >> 16u) & 1u)) >> 16u;
}

// Element e of sample s's output tensor, before conversion to the output type.
fn tensor_value(s: u32, e: u32) -> f32 {
    let w = field(s, WIDTH);
    let plane = w * field(s, HEIGHT);
    var c = e % 3u;
    var pix = e / 3u;
    if (p.chw == 1u) {
        c = e / plane;
        pix = e % plane;
    }
    var x = pix % w;
    let y = pix / w;
    if (field(s, FLAG) != 0u) {
        x = w - 1u - x;
    }
    var u = 0.0;
    if (p.mode == 1u) {
        u = resampled(s, x, y, c);
    } else {
        u = f32(src_byte(s, (y * w + x) * 3u + c));
    }
    return u * p.scale[c] + p.bias[c];
}

// One invocation per output word (1 f32, 2 f16/bf16 or 4 u8 elements) of sample id.y; the
// sample's tensor starts at word dst_off and holds 3 * width * height elements.
@compute @workgroup_size(64, 1, 1)
fn write_tensor(@builtin(global_invocation_id) id: vec3<u32>) {
    let s = id.y;
    if (s >= p.samples) {
        return;
    }
    let n = pixels_of(s) * 3u;
    var per_word = 1u;
    if (p.dtype == 0u) {
        per_word = 4u;
    } else if (p.dtype != 3u) {
        per_word = 2u;
    }
    let e0 = id.x * per_word;
    if (e0 >= n) {
        return;
    }
    var vals = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
    for (var j = 0u; j < per_word; j = j + 1u) {
        if (e0 + j < n) {
            vals[j] = tensor_value(s, e0 + j);
        }
    }
    var word = 0u;
    if (p.dtype == 3u) {
        word = bitcast<u32>(vals[0]);
    } else if (p.dtype == 1u) {
        word = pack2x16float(vec2<f32>(vals[0], vals[1]));
    } else if (p.dtype == 2u) {
        word = bf16_bits(vals[0]) | (bf16_bits(vals[1]) << 16u);
    } else {
        for (var j = 0u; j < 4u; j = j + 1u) {
            word = word | (u32(floor(clamp(vals[j], 0.0, 255.0) + 0.5)) << (j * 8u));
        }
    }
    // A partial last word keeps its unused high bytes zero, as the host's padding does.
    dst[field(s, DST_OFF) + id.x] = word;
}
