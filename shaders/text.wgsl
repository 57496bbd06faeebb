// Token batches (src/ops/text.rs, src/text/): padding ragged token ids into the batch's
// `[n, width]` matrix, BERT's MLM corruption, and the embedding lookup (gather). Integer
// kernels, bit-exact with the CPU. Everything lives in one buffer, dst: the ids matrix at
// rec[T_DST] (row s at s·width), the labels matrix at rec[T_LABEL_DST] (none: NONE), the
// embeddings `[n, width, dim]` at rec[T_OUT]. Dispatch: x over one sample's work, y = the
// sample. Host side: src/backend/wgpu/text.rs; CUDA twin: kernels/text.cu.

const T_DST: u32 = 0u;
const T_LEN: u32 = 1u;
// The sample's ids in src, and its labels (NONE: it has none).
const T_SRC: u32 = 2u;
const T_WIDTH: u32 = 3u;
const T_LABEL_SRC: u32 = 4u;
const T_LABEL_DST: u32 = 5u;
const T_PAD_ID: u32 = 6u;
// MlmMask: the sample's counter-RNG stream (src/rng.rs SampleRng: key, counter words 1..3)
// and the word offset in rec of the operator's table: thresholds select, mask, mask + random
// (each lo, hi: `w < threshold` where hi = 1 means 2^32), mask id, vocabulary, then the count
// of special ids and the ids, sorted.
const T_KEY0: u32 = 7u;
const T_KEY1: u32 = 8u;
const T_C1: u32 = 9u;
const T_C2: u32 = 10u;
const T_C3: u32 = 11u;
const T_TABLE: u32 = 12u;
// EmbeddingLookup: output offset, row width, table rows, padding value (f32 bits).
const T_OUT: u32 = 7u;
const T_DIM: u32 = 8u;
const T_ROWS: u32 = 9u;
const T_PAD_VALUE: u32 = 10u;

const NONE: u32 = 0xFFFFFFFFu;
// -100 as i32 bits: the label the loss ignores.
const IGNORE: u32 = 0xFFFFFF9Cu;

// The frozen embedding table, `[rows, dim]` f32.
@group(0) @binding(3) var<storage, read_write> aux: array<f32>;

fn tf(s: u32, k: u32) -> u32 {
    return rec[s * p.rec_words + k];
}

// The high word of a × b (WGSL has no 64-bit integers): four 16-bit partial products.
fn mul_hi(a: u32, b: u32) -> u32 {
    let a0 = a & 0xFFFFu;
    let a1 = a >> 16u;
    let b0 = b & 0xFFFFu;
    let b1 = b >> 16u;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let mid = ((a0 * b0) >> 16u) + (p01 & 0xFFFFu) + (p10 & 0xFFFFu);
    return a1 * b1 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u);
}

// Philox 4x32-10, as src/rng.rs philox4x32.
fn philox(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
    var c = counter;
    var k = key;
    for (var round = 0u; round < 10u; round++) {
        if (round > 0u) {
            k = k + vec2<u32>(0x9E3779B9u, 0xBB67AE85u);
        }
        let m0 = 0xD2511F53u;
        let m1 = 0xCD9E8D57u;
        c = vec4<u32>(
            mul_hi(m1, c.z) ^ c.y ^ k.x,
            m1 * c.z,
            mul_hi(m0, c.x) ^ c.w ^ k.y,
            m0 * c.x,
        );
    }
    return c;
}

// `w` below the threshold stored at rec[at] (lo) and rec[at + 1] (hi: 2^32).
fn below(w: u32, at: u32) -> bool {
    return rec[at + 1u] != 0u || w < rec[at];
}

fn is_special(table: u32, id: u32) -> bool {
    var lo = 0u;
    var hi = rec[table + 8u];
    let ids = table + 9u;
    while (lo < hi) {
        let mid = (lo + hi) / 2u;
        let v = rec[ids + mid];
        if (v == id) {
            return true;
        }
        if (v < id) {
            lo = mid + 1u;
        } else {
            hi = mid;
        }
    }
    return false;
}

// Row j of sample s: its id (or the pad id past its length) and its label (or -100).
@compute @workgroup_size(64, 1, 1)
fn token_pad(@builtin(global_invocation_id) id: vec3<u32>) {
    let s = id.y;
    let j = id.x;
    if (s >= p.samples || j >= tf(s, T_WIDTH)) {
        return;
    }
    let len = tf(s, T_LEN);
    var v = tf(s, T_PAD_ID);
    if (j < len) {
        v = src[tf(s, T_SRC) + j];
    }
    dst[tf(s, T_DST) + j] = v;
    let labels = tf(s, T_LABEL_DST);
    if (labels != NONE) {
        var l = IGNORE;
        let origin = tf(s, T_LABEL_SRC);
        if (j < len && origin != NONE) {
            l = src[origin + j];
        }
        dst[labels + j] = l;
    }
}

// BERT's corruption of token j (src/text/mlm.rs): Philox block j of the sample's stream;
// word 0 selects, word 1 picks mask / random id (word 2 scaled to the vocabulary) / keep.
@compute @workgroup_size(64, 1, 1)
fn token_mlm(@builtin(global_invocation_id) id: vec3<u32>) {
    let s = id.y;
    let j = id.x;
    if (s >= p.samples || j >= tf(s, T_LEN)) {
        return;
    }
    let table = tf(s, T_TABLE);
    let counter = vec4<u32>(j, tf(s, T_C1), tf(s, T_C2), tf(s, T_C3));
    let w = philox(counter, vec2<u32>(tf(s, T_KEY0), tf(s, T_KEY1)));
    let at = tf(s, T_DST) + j;
    let original = dst[at];
    var label = IGNORE;
    if (below(w.x, table) && !is_special(table, original)) {
        label = original;
        if (below(w.y, table + 2u)) {
            dst[at] = rec[table + 6u];
        } else if (below(w.y, table + 4u)) {
            dst[at] = mul_hi(w.z, rec[table + 7u]);
        }
    }
    dst[tf(s, T_LABEL_DST) + j] = label;
}

// Output word x of sample s's `[width, dim]` block: its token's table row, the padding value
// past the sample's length. A grid-stride loop: a long block needs more than 65535 groups.
@compute @workgroup_size(64, 1, 1)
fn token_gather(
    @builtin(global_invocation_id) id: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let s = id.y;
    if (s >= p.samples) {
        return;
    }
    let dim = tf(s, T_DIM);
    let total = tf(s, T_WIDTH) * dim;
    let len = tf(s, T_LEN);
    let ids = tf(s, T_DST);
    let out = tf(s, T_OUT);
    for (var x = id.x; x < total; x += groups.x * 64u) {
        let j = x / dim;
        var v = tf(s, T_PAD_VALUE);
        if (j < len) {
            let token = dst[ids + j];
            // The host checked every id; an unchecked one shows as NaN, never a stray read.
            v = 0x7FC00000u;
            if (token < tf(s, T_ROWS)) {
                v = bitcast<u32>(aux[token * dim + x % dim]);
            }
        }
        dst[out + x] = v;
    }
}
