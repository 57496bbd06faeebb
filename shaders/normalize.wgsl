// Normalize + HWC->CHW + optional per-sample horizontal flip, u8 in, f32 out.
// out[s][c][y][x] = f32(in[s][y][x'][c]) * scale[c] + bias[c], x' = flip ? w-1-x : x.
// The same formula (and constants) as the CPU path in src/ops/normalize.rs.

struct Params {
    scale: vec4<f32>,
    bias: vec4<f32>,
    width: u32,
    height: u32,
    samples: u32,
    // Words (u32) between the starts of consecutive input samples.
    sample_stride_words: u32,
};

@group(0) @binding(0) var<storage, read> pixels: array<u32>;
@group(0) @binding(1) var<storage, read> flips: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

// Byte `i` of the packed u8 input (little-endian within each word).
fn load_u8(i: u32) -> u32 {
    return (pixels[i >> 2u] >> ((i & 3u) * 8u)) & 0xFFu;
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let x = id.x;
    let y = id.y;
    let s = id.z;
    if (x >= p.width || y >= p.height || s >= p.samples) {
        return;
    }
    var sx = x;
    if (flips[s] != 0u) {
        sx = p.width - 1u - x;
    }
    let src = s * p.sample_stride_words * 4u + (y * p.width + sx) * 3u;
    let plane = p.width * p.height;
    let dst = s * plane * 3u + y * p.width + x;
    for (var c = 0u; c < 3u; c = c + 1u) {
        out[dst + c * plane] = f32(load_u8(src + c)) * p.scale[c] + p.bias[c];
    }
}
