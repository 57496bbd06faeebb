// Speech features (src/ops/audio.rs, src/audio/): the power spectrogram, mel projection, log,
// per-bin normalization, SpecAugment masks and the batch's time padding. Values are f32 (as
// u32 bits) in padded matrices: sample s's matrix starts at word rec[S_DST] of dst, has
// rec[S_ROWS] rows of rec[S_WIDTH] words, and its first rec[S_FRAMES] columns are its frames
// (the batch's padded `[n, rows, width]` tensor). Dispatch: x over the work of one sample,
// y = the sample. Host side: src/backend/wgpu/spectral.rs.

const S_DST: u32 = 0u;
const S_ROWS: u32 = 1u;
const S_FRAMES: u32 = 2u;
// The sample's input in src: audio at S_SRC (S_LEN samples), or a matrix of S_SRC_ROWS rows
// of S_WIDTH words.
const S_SRC: u32 = 3u;
const S_LEN: u32 = 4u;
const S_WIDTH: u32 = 5u;
const S_SRC_ROWS: u32 = 6u;
// Operator fields.
const S_N_FFT: u32 = 7u;
const S_HOP: u32 = 8u;
// 0: frames start at sample 0; 1: centred, reflect padding; 2: centred, zero padding.
const S_PAD_MODE: u32 = 9u;
const S_POWER: u32 = 10u;
// Word offsets into rec (counted from the first record) of the twiddle table (n_fft pairs
// cos(2πt/N), −sin(2πt/N)) and the window (n_fft floats).
const S_TWIDDLES: u32 = 11u;
const S_WINDOW: u32 = 12u;
const S_RADICES: u32 = 13u;
// The FFT's radices (2, 3, 4 or 5), S_RADICES of them.
const S_RADIX0: u32 = 14u;
// Mel: the filterbank [src_rows][rows] and each mel's non-zero bin range [lo, hi) at these
// offsets; S_LOG = 1 applies ln(x + eps) (S_EPS) to the sum (Log fused).
const S_BANK: u32 = 7u;
const S_BANK_RANGES: u32 = 8u;
const S_LOG: u32 = 9u;
const S_EPS: u32 = 10u;
// Masks: 0 rows (frequency), 1 columns (time); fill value; the sample's ranges [start, end).
const S_AXIS: u32 = 7u;
const S_FILL: u32 = 8u;
const S_RANGES: u32 = 9u;
const S_RANGES_OFF: u32 = 10u;

// Half the largest n_fft: a frame's n_fft real samples are packed as n_fft/2 complex ones
// (even samples real, odd imaginary), which live in an invocation's private memory, twice.
const MAX_HALF: u32 = 512u;

fn fld(s: u32, k: u32) -> u32 {
    return rec[s * p.rec_words + k];
}

fn twiddle(s: u32, t: u32) -> vec2<f32> {
    let o = fld(s, S_TWIDDLES) + 2u * t;
    return vec2<f32>(bitcast<f32>(rec[o]), bitcast<f32>(rec[o + 1u]));
}

fn cmul(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x);
}

// Sample i of the centred (padded) signal, i counted in the padded signal.
fn padded_sample(s: u32, i: u32) -> f32 {
    let len = fld(s, S_LEN);
    let mode = fld(s, S_PAD_MODE);
    var j = i32(i);
    if (mode != 0u) {
        j = j - i32(fld(s, S_N_FFT) / 2u);
    }
    if (j < 0 || j >= i32(len)) {
        if (mode != 1u) {
            return 0.0;
        }
        if (j < 0) {
            j = -j;
        } else {
            j = 2 * (i32(len) - 1) - j;
        }
    }
    return bitcast<f32>(src[fld(s, S_SRC) + u32(j)]);
}

// One Stockham pass of radix r over the h = n_fft/2 points: `a` (sub-transforms of size ns
// done) into `b`. The h-point twiddle e^{-2πit/h} is the table's entry 2t.
fn fft_pass(
    s: u32,
    a: ptr<function, array<vec2<f32>, MAX_HALF>>,
    b: ptr<function, array<vec2<f32>, MAX_HALF>>,
    h: u32,
    r: u32,
    ns: u32,
) {
    let m = h / r;
    let span = ns * r;
    var v: array<vec2<f32>, 5>;
    for (var j = 0u; j < m; j = j + 1u) {
        let k = j % ns;
        for (var q = 0u; q < r; q = q + 1u) {
            v[q] = cmul((*a)[j + q * m], twiddle(s, 2u * ((q * k * (h / span)) % h)));
        }
        let base = (j / ns) * span + k;
        for (var o = 0u; o < r; o = o + 1u) {
            var acc = v[0];
            for (var q = 1u; q < r; q = q + 1u) {
                acc = acc + cmul(v[q], twiddle(s, 2u * ((o * q * m) % h)));
            }
            (*b)[base + o * ns] = acc;
        }
    }
}

// Spectrogram: one invocation per frame; |X_k|^power for k in 0..=n_fft/2 into column t. The
// real frame is transformed as h = n_fft/2 complex points z[i] = x[2i] + i·x[2i+1]; then
// X_k = E_k + e^{-2πik/N}·O_k with E_k = (Z_k + conj Z_{h-k}) / 2, O_k = (Z_k − conj Z_{h-k}) / 2i.
@compute @workgroup_size(64, 1, 1)
fn stft_power(@builtin(global_invocation_id) id: vec3<u32>) {
    let s = id.y;
    let t = id.x;
    if (s >= p.samples || t >= fld(s, S_FRAMES)) {
        return;
    }
    let n = fld(s, S_N_FFT);
    let h = n / 2u;
    var a: array<vec2<f32>, MAX_HALF>;
    var b: array<vec2<f32>, MAX_HALF>;
    let start = t * fld(s, S_HOP);
    let win = fld(s, S_WINDOW);
    for (var i = 0u; i < h; i = i + 1u) {
        let even = padded_sample(s, start + 2u * i) * bitcast<f32>(rec[win + 2u * i]);
        let odd = padded_sample(s, start + 2u * i + 1u) * bitcast<f32>(rec[win + 2u * i + 1u]);
        a[i] = vec2<f32>(even, odd);
    }
    var ns = 1u;
    let passes = fld(s, S_RADICES);
    for (var k = 0u; k < passes; k = k + 1u) {
        let r = fld(s, S_RADIX0 + k);
        if (k % 2u == 0u) {
            fft_pass(s, &a, &b, h, r, ns);
        } else {
            fft_pass(s, &b, &a, h, r, ns);
        }
        ns = ns * r;
    }
    let width = fld(s, S_WIDTH);
    let out = fld(s, S_DST) + t;
    for (var k = 0u; k <= h; k = k + 1u) {
        var zk = a[k % h];
        var zc = a[(h - k) % h];
        if (passes % 2u == 1u) {
            zk = b[k % h];
            zc = b[(h - k) % h];
        }
        zc = vec2<f32>(zc.x, -zc.y);
        let e = (zk + zc) * 0.5;
        let d = zk - zc;
        let o = vec2<f32>(d.y * 0.5, -d.x * 0.5);
        let c = e + cmul(twiddle(s, k), o);
        var v = c.x * c.x + c.y * c.y;
        if (fld(s, S_POWER) == 1u) {
            v = sqrt(v);
        }
        dst[out + k * width] = bitcast<u32>(v);
    }
}

// Row and column of element x of sample s's matrix, and whether it is one of the sample's
// cells (false past its rows or frames, or for a sample past the batch).
fn cell(s: u32, x: u32) -> vec3<u32> {
    if (s >= p.samples) {
        return vec3<u32>(0u, 0u, 0u);
    }
    let width = fld(s, S_WIDTH);
    let row = x / width;
    let t = x % width;
    let inside = row < fld(s, S_ROWS) && t < fld(s, S_FRAMES);
    return vec3<u32>(row, t, u32(inside));
}

// MelScale: mel[m][t] = Σ_k bank[k][m] · spec[k][t] over the filter's non-zero bins, in the
// CPU's order (k ascending); with S_LOG, ln(sum + eps).
@compute @workgroup_size(64, 1, 1)
fn mel_project(@builtin(global_invocation_id) id: vec3<u32>) {
    let s = id.y;
    let c = cell(s, id.x);
    if (c.z == 0u) {
        return;
    }
    let width = fld(s, S_WIDTH);
    let mels = fld(s, S_ROWS);
    let bank = fld(s, S_BANK);
    let range = fld(s, S_BANK_RANGES) + 2u * c.x;
    var acc = 0.0;
    for (var k = rec[range]; k < rec[range + 1u]; k = k + 1u) {
        let w = bitcast<f32>(rec[bank + k * mels + c.x]);
        if (w != 0.0) {
            acc = acc + w * bitcast<f32>(src[fld(s, S_SRC) + k * width + c.y]);
        }
    }
    if (fld(s, S_LOG) == 1u) {
        acc = log(acc + bitcast<f32>(fld(s, S_EPS)));
    }
    dst[fld(s, S_DST) + c.x * width + c.y] = bitcast<u32>(acc);
}

// Log in place: ln(x + eps).
@compute @workgroup_size(64, 1, 1)
fn spectral_log(@builtin(global_invocation_id) id: vec3<u32>) {
    let s = id.y;
    let c = cell(s, id.x);
    if (c.z == 0u) {
        return;
    }
    let i = fld(s, S_DST) + c.x * fld(s, S_WIDTH) + c.y;
    dst[i] = bitcast<u32>(log(bitcast<f32>(dst[i]) + bitcast<f32>(fld(s, S_EPS))));
}

// FeatureNormalize in place, one invocation per row: (x − mean) / (std + 1e-5) over the
// sample's frames, unbiased std (0 for one frame); compensated (Kahan) sums stand in for the
// CPU's f64 ones.
@compute @workgroup_size(64, 1, 1)
fn feature_normalize(@builtin(global_invocation_id) id: vec3<u32>) {
    let s = id.y;
    let row = id.x;
    if (s >= p.samples || row >= fld(s, S_ROWS)) {
        return;
    }
    let frames = fld(s, S_FRAMES);
    let base = fld(s, S_DST) + row * fld(s, S_WIDTH);
    var sum = 0.0;
    var carry = 0.0;
    for (var t = 0u; t < frames; t = t + 1u) {
        let y = bitcast<f32>(dst[base + t]) - carry;
        let next = sum + y;
        carry = (next - sum) - y;
        sum = next;
    }
    let mean = sum / f32(frames);
    var sq = 0.0;
    carry = 0.0;
    for (var t = 0u; t < frames; t = t + 1u) {
        let d = bitcast<f32>(dst[base + t]) - mean;
        let y = d * d - carry;
        let next = sq + y;
        carry = (next - sq) - y;
        sq = next;
    }
    var deviation = 0.0;
    if (frames > 1u) {
        deviation = sqrt(sq / f32(frames - 1u));
    }
    let scale = 1.0 / (deviation + 1e-5);
    for (var t = 0u; t < frames; t = t + 1u) {
        dst[base + t] = bitcast<u32>((bitcast<f32>(dst[base + t]) - mean) * scale);
    }
}

// A SpecAugment mask operator in place: every cell in one of the sample's ranges (rows for
// frequency, frames for time) becomes the fill value.
@compute @workgroup_size(64, 1, 1)
fn spectral_mask(@builtin(global_invocation_id) id: vec3<u32>) {
    let s = id.y;
    let c = cell(s, id.x);
    if (c.z == 0u) {
        return;
    }
    var at = c.x;
    if (fld(s, S_AXIS) == 1u) {
        at = c.y;
    }
    let ranges = fld(s, S_RANGES_OFF);
    for (var r = 0u; r < fld(s, S_RANGES); r = r + 1u) {
        if (at >= rec[ranges + 2u * r] && at < rec[ranges + 2u * r + 1u]) {
            dst[fld(s, S_DST) + c.x * fld(s, S_WIDTH) + c.y] = fld(s, S_FILL);
            return;
        }
    }
}

// The batch's padding: every column past the sample's frames becomes the pad value.
@compute @workgroup_size(64, 1, 1)
fn spectral_pad(@builtin(global_invocation_id) id: vec3<u32>) {
    let s = id.y;
    if (s >= p.samples) {
        return;
    }
    let width = fld(s, S_WIDTH);
    let row = id.x / width;
    let t = id.x % width;
    if (row < fld(s, S_ROWS) && t >= fld(s, S_FRAMES)) {
        dst[fld(s, S_DST) + row * width + t] = fld(s, S_FILL);
    }
}
