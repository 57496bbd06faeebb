// Crop + resize (antialiased bilinear) from a ragged u8 batch, the tensor write
// (normalize / cast, f32 / f16 / bf16 / u8, CHW / HWC, per-sample flip), and the two fused.
//
// Resample: bit-exact with the CPU path. The host computes the CPU resizer's fixed-point weights
// (Pillow's convolution arithmetic, as fast_image_resize runs it) per sample and axis; the
// kernels apply them in the same order: vertical pass first, its result (u8) kept in aux for the
// source columns the horizontal pass reads; then horizontal. resample_horizontal writes a u8
// image; write_tensor in mode 1 finishes the horizontal pass straight into the tensor (fused).

@group(0) @binding(3) var<storage, read_write> aux: array<f32>;

fn src_pixel(s: u32, x: u32, y: u32) -> vec3<i32> {
    let i = (y * field(s, SRC_W) + x) * 3u;
    return vec3<i32>(i32(src_byte(s, i)), i32(src_byte(s, i + 1u)), i32(src_byte(s, i + 2u)));
}

// Word offset of output coordinate o's entry in the table at field `tab` (window at `win`).
fn entry_of(s: u32, tab: u32, win: u32, o: u32) -> u32 {
    return field(s, tab) + o * (field(s, win) + 2u);
}

fn clip_u8(sum: i32, shift: u32) -> i32 {
    return clamp(sum >> shift, 0, 255);
}

// One invocation per (output row, kept source column) of sample id.y.
@compute @workgroup_size(64, 1, 1)
fn resample_vertical(@builtin(global_invocation_id) id: vec3<u32>) {
    let s = id.y;
    let cols = field(s, COLS);
    let i = id.x;
    if (s >= p.samples || i >= field(s, HEIGHT) * cols) {
        return;
    }
    let x = field(s, COL0) + i % cols;
    let e = entry_of(s, V_TAB, WIN_V, i / cols);
    let first = rec[e];
    let shift = field(s, PREC_V);
    var acc = vec3<i32>(1 << (shift - 1u));
    for (var k = 0u; k < rec[e + 1u]; k = k + 1u) {
        acc = acc + bitcast<i32>(rec[e + 2u + k]) * src_pixel(s, x, first + k);
    }
    let a = field(s, AUX_OFF) + i * 3u;
    aux[a] = f32(clip_u8(acc.x, shift));
    aux[a + 1u] = f32(clip_u8(acc.y, shift));
    aux[a + 2u] = f32(clip_u8(acc.z, shift));
}

// Channel c of output pixel (x, y) of sample s, from the columns resample_vertical left in aux.
fn resampled(s: u32, x: u32, y: u32, c: u32) -> f32 {
    let col0 = field(s, COL0);
    let cols = field(s, COLS);
    let e = entry_of(s, H_TAB, WIN_H, x);
    let first = rec[e];
    let shift = field(s, PREC_H);
    var acc = 1 << (shift - 1u);
    for (var k = 0u; k < rec[e + 1u]; k = k + 1u) {
        let v = i32(aux[field(s, AUX_OFF) + (y * cols + first + k - col0) * 3u + c]);
        acc = acc + bitcast<i32>(rec[e + 2u + k]) * v;
    }
    return f32(clip_u8(acc, shift));
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
