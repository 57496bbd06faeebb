// Shared by every sluice WGSL kernel (prepended to each module by the host).
//
// Images are packed u8 RGB, HWC, each sample starting on a word boundary and padded to whole
// 4-pixel groups (4 pixels = 12 bytes = 3 words), so an invocation that writes one group never
// shares a word with another. Samples may differ in size: everything about sample `s` is in
// its record rec[s * p.rec_words ..] (fields below), so one dispatch covers a ragged batch.

struct Params {
    samples: u32,
    rec_words: u32,
    // Blur taps.
    taps: u32,
    // ColorJitter slot (which adjustment of each sample's order runs).
    slot: u32,
    // write_tensor: 0 reads the u8 image in `src`; 1 finishes a resample from `aux` (fused).
    // fill: the poison word.
    mode: u32,
    // write_tensor element type: 0 u8, 1 f16, 2 bf16, 3 f32.
    dtype: u32,
    // write_tensor layout: 1 CHW, 0 HWC.
    chw: u32,
    // fill: words to poison.
    total_words: u32,
    scale: vec4<f32>,
    bias: vec4<f32>,
};

@group(0) @binding(0) var<storage, read_write> dst: array<u32>;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read> rec: array<u32>;
@group(0) @binding(4) var<uniform> p: Params;

// Record fields. Offsets are in words; sizes in pixels.
const DST_OFF: u32 = 0u;
const WIDTH: u32 = 1u;
const HEIGHT: u32 = 2u;
const AUX_OFF: u32 = 3u;
// Apply / flip / mirror flag.
const FLAG: u32 = 4u;
const SRC_OFF: u32 = 5u;
const SRC_W: u32 = 6u;
const SRC_H: u32 = 7u;
// First source column the vertical resample pass keeps, and how many.
const COL0: u32 = 8u;
const COLS: u32 = 9u;
// CenterCrop / copy: source offset of the output's origin (f32 bits).
const LEFT: u32 = 10u;
const TOP: u32 = 11u;
// Resample: the CPU resizer's fixed-point weights (src/ops/resample.rs, AxisWeights), one table
// per axis at these word offsets into `rec`: per output coordinate [first source pixel, count,
// WIN weights (i32)]; sums start at half a unit and shift right by PREC.
const H_TAB: u32 = 10u;
const V_TAB: u32 = 11u;
const PREC_H: u32 = 12u;
const PREC_V: u32 = 13u;
const WIN_H: u32 = 14u;
const WIN_V: u32 = 15u;
// Operator-specific extras (jitter order and factors, blur weights).
const EXTRA: u32 = 16u;

fn field(s: u32, k: u32) -> u32 {
    return rec[s * p.rec_words + k];
}

fn field_f(s: u32, k: u32) -> f32 {
    return bitcast<f32>(field(s, k));
}

fn pixels_of(s: u32) -> u32 {
    return field(s, WIDTH) * field(s, HEIGHT);
}

fn groups_of(s: u32) -> u32 {
    return (pixels_of(s) + 3u) / 4u;
}

// Byte `i` of sample s's image in dst / src.
fn dst_byte(s: u32, i: u32) -> u32 {
    return (dst[field(s, DST_OFF) + i / 4u] >> ((i % 4u) * 8u)) & 0xFFu;
}

fn src_byte(s: u32, i: u32) -> u32 {
    return (src[field(s, SRC_OFF) + i / 4u] >> ((i % 4u) * 8u)) & 0xFFu;
}

// Write 12 bytes (4 pixels) as group g of sample s's image in dst.
fn store_group(s: u32, g: u32, v: array<u32, 12>) {
    let base = field(s, DST_OFF) + g * 3u;
    for (var j = 0u; j < 3u; j = j + 1u) {
        dst[base + j] = v[j * 4u] | (v[j * 4u + 1u] << 8u) | (v[j * 4u + 2u] << 16u) | (v[j * 4u + 3u] << 24u);
    }
}

// Reflect padding without repeating the edge (torchvision's "reflect").
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

// Fill dst[0 .. p.total_words] with the poison word p.mode (0xFFFFFFFF: NaN as f32/f16/bf16,
// 255 as u8): run before a kernel in checking mode so an element the kernel never writes shows.
@compute @workgroup_size(64, 1, 1)
fn fill(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
    let i = id.y * n.x * 64u + id.x;
    if (i < p.total_words) {
        dst[i] = p.mode;
    }
}
