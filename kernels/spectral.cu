// Speech features: power spectrogram (mixed-radix FFT), mel projection (+ log), log, per-bin
// normalization, SpecAugment masks and the batch's time padding. The CUDA twin of
// shaders/spectral.wgsl: the same records (S_* fields), passes and arithmetic; the host side is
// src/backend/wgpu/spectral.rs. Matrices are f32 bits, `[rows, width]` per sample, the first
// S_FRAMES columns valid.

#define S_DST 0u
#define S_ROWS 1u
#define S_FRAMES 2u
#define S_SRC 3u
#define S_LEN 4u
#define S_WIDTH 5u
#define S_SRC_ROWS 6u
#define S_N_FFT 7u
#define S_HOP 8u
#define S_PAD_MODE 9u
#define S_POWER 10u
#define S_TWIDDLES 11u
#define S_WINDOW 12u
#define S_RADICES 13u
#define S_RADIX0 14u
#define S_BANK 7u
#define S_BANK_RANGES 8u
#define S_LOG 9u
#define S_EPS 10u
#define S_AXIS 7u
#define S_FILL 8u
#define S_RANGES 9u
#define S_RANGES_OFF 10u
#define MAX_HALF 512u

struct cplx {
    float x, y;
};

__device__ cplx cmul(cplx a, cplx b) {
    cplx r;
    r.x = a.x * b.x - a.y * b.y;
    r.y = a.x * b.y + a.y * b.x;
    return r;
}

__device__ cplx twiddle(const uint32_t* rec, const Params& p, uint32_t s, uint32_t t) {
    uint32_t o = field(rec, p, s, S_TWIDDLES) + 2u * t;
    cplx r;
    r.x = __uint_as_float(rec[o]);
    r.y = __uint_as_float(rec[o + 1u]);
    return r;
}

// Sample i of the centred (padded) signal.
__device__ float padded_sample(const uint32_t* src, const uint32_t* rec, const Params& p,
                               uint32_t s, uint32_t i) {
    int32_t len = (int32_t)field(rec, p, s, S_LEN);
    uint32_t mode = field(rec, p, s, S_PAD_MODE);
    int32_t j = (int32_t)i;
    if (mode != 0u) j -= (int32_t)(field(rec, p, s, S_N_FFT) / 2u);
    if (j < 0 || j >= len) {
        if (mode != 1u) return 0.0f;
        j = j < 0 ? -j : 2 * (len - 1) - j;
    }
    return __uint_as_float(src[field(rec, p, s, S_SRC) + (uint32_t)j]);
}

// One Stockham pass of radix r over the h = n_fft/2 points: `a` (sub-transforms of size ns
// done) into `b`. The h-point twiddle e^{-2πit/h} is the table's entry 2t.
__device__ void fft_pass(const uint32_t* rec, const Params& p, uint32_t s, const cplx* a, cplx* b,
                         uint32_t h, uint32_t r, uint32_t ns) {
    uint32_t m = h / r, span = ns * r;
    cplx v[5];
    for (uint32_t j = 0; j < m; ++j) {
        uint32_t k = j % ns;
        for (uint32_t q = 0; q < r; ++q)
            v[q] = cmul(a[j + q * m], twiddle(rec, p, s, 2u * ((q * k * (h / span)) % h)));
        uint32_t base = (j / ns) * span + k;
        for (uint32_t o = 0; o < r; ++o) {
            cplx acc = v[0];
            for (uint32_t q = 1; q < r; ++q) {
                cplx t = cmul(v[q], twiddle(rec, p, s, 2u * ((o * q * m) % h)));
                acc.x = acc.x + t.x;
                acc.y = acc.y + t.y;
            }
            b[base + o * ns] = acc;
        }
    }
}

// Spectrogram: one thread per frame; |X_k|^power for k in 0..=n_fft/2 into column t, the real
// frame transformed as n_fft/2 complex points (see spectral.wgsl).
SLUICE_KERNEL(stft_power) {
    uint32_t s = blockIdx.y, t = global_x();
    if (s >= p.samples || t >= field(rec, p, s, S_FRAMES)) return;
    uint32_t n = field(rec, p, s, S_N_FFT), h = n / 2u;
    cplx a[MAX_HALF], b[MAX_HALF];
    uint32_t start = t * field(rec, p, s, S_HOP), win = field(rec, p, s, S_WINDOW);
    for (uint32_t i = 0; i < h; ++i) {
        a[i].x = padded_sample(src, rec, p, s, start + 2u * i) * __uint_as_float(rec[win + 2u * i]);
        a[i].y = padded_sample(src, rec, p, s, start + 2u * i + 1u) *
                 __uint_as_float(rec[win + 2u * i + 1u]);
    }
    uint32_t ns = 1u, passes = field(rec, p, s, S_RADICES);
    for (uint32_t k = 0; k < passes; ++k) {
        uint32_t r = field(rec, p, s, S_RADIX0 + k);
        if (k % 2u == 0u) fft_pass(rec, p, s, a, b, h, r, ns);
        else fft_pass(rec, p, s, b, a, h, r, ns);
        ns *= r;
    }
    const cplx* z = passes % 2u == 1u ? b : a;
    uint32_t width = field(rec, p, s, S_WIDTH), at = field(rec, p, s, S_DST) + t;
    bool magnitude = field(rec, p, s, S_POWER) == 1u;
    for (uint32_t k = 0; k <= h; ++k) {
        cplx zk = z[k % h], zc = z[(h - k) % h];
        zc.y = -zc.y;
        cplx e, o;
        e.x = (zk.x + zc.x) * 0.5f;
        e.y = (zk.y + zc.y) * 0.5f;
        o.x = (zk.y - zc.y) * 0.5f;
        o.y = -(zk.x - zc.x) * 0.5f;
        cplx c = cmul(twiddle(rec, p, s, k), o);
        c.x = e.x + c.x;
        c.y = e.y + c.y;
        float v = c.x * c.x + c.y * c.y;
        if (magnitude) v = sqrtf(v);
        dst[at + k * width] = __float_as_uint(v);
    }
}

// Row and column of element x of sample s's matrix; false past its rows or frames.
__device__ bool cell(const uint32_t* rec, const Params& p, uint32_t s, uint32_t x, uint32_t* row,
                     uint32_t* t) {
    uint32_t width = field(rec, p, s, S_WIDTH);
    *row = x / width;
    *t = x % width;
    return *row < field(rec, p, s, S_ROWS) && *t < field(rec, p, s, S_FRAMES);
}

// MelScale over the filter's non-zero bins in the CPU's order; with S_LOG, ln(sum + eps).
SLUICE_KERNEL(mel_project) {
    uint32_t s = blockIdx.y, m, t;
    if (s >= p.samples || !cell(rec, p, s, global_x(), &m, &t)) return;
    uint32_t width = field(rec, p, s, S_WIDTH), mels = field(rec, p, s, S_ROWS);
    uint32_t bank = field(rec, p, s, S_BANK), range = field(rec, p, s, S_BANK_RANGES) + 2u * m;
    uint32_t from = field(rec, p, s, S_SRC);
    float acc = 0.0f;
    for (uint32_t k = rec[range]; k < rec[range + 1u]; ++k) {
        float w = __uint_as_float(rec[bank + k * mels + m]);
        if (w != 0.0f) acc = acc + w * __uint_as_float(src[from + k * width + t]);
    }
    if (field(rec, p, s, S_LOG) == 1u) acc = logf(acc + field_f(rec, p, s, S_EPS));
    dst[field(rec, p, s, S_DST) + m * width + t] = __float_as_uint(acc);
}

// Log in place: ln(x + eps).
SLUICE_KERNEL(spectral_log) {
    uint32_t s = blockIdx.y, row, t;
    if (s >= p.samples || !cell(rec, p, s, global_x(), &row, &t)) return;
    uint32_t i = field(rec, p, s, S_DST) + row * field(rec, p, s, S_WIDTH) + t;
    dst[i] = __float_as_uint(logf(__uint_as_float(dst[i]) + field_f(rec, p, s, S_EPS)));
}

// FeatureNormalize in place, one thread per row, compensated (Kahan) sums.
SLUICE_KERNEL(feature_normalize) {
    uint32_t s = blockIdx.y, row = global_x();
    if (s >= p.samples || row >= field(rec, p, s, S_ROWS)) return;
    uint32_t frames = field(rec, p, s, S_FRAMES);
    uint32_t base = field(rec, p, s, S_DST) + row * field(rec, p, s, S_WIDTH);
    float sum = 0.0f, carry = 0.0f;
    for (uint32_t t = 0; t < frames; ++t) {
        float y = __uint_as_float(dst[base + t]) - carry;
        float next = sum + y;
        carry = (next - sum) - y;
        sum = next;
    }
    float mean = sum / (float)frames, sq = 0.0f;
    carry = 0.0f;
    for (uint32_t t = 0; t < frames; ++t) {
        float d = __uint_as_float(dst[base + t]) - mean;
        float y = d * d - carry;
        float next = sq + y;
        carry = (next - sq) - y;
        sq = next;
    }
    float deviation = frames > 1u ? sqrtf(sq / (float)(frames - 1u)) : 0.0f;
    float scale = 1.0f / (deviation + 1e-5f);
    for (uint32_t t = 0; t < frames; ++t)
        dst[base + t] = __float_as_uint((__uint_as_float(dst[base + t]) - mean) * scale);
}

// A SpecAugment mask in place: cells in one of the sample's ranges become the fill value.
SLUICE_KERNEL(spectral_mask) {
    uint32_t s = blockIdx.y, row, t;
    if (s >= p.samples || !cell(rec, p, s, global_x(), &row, &t)) return;
    uint32_t at = field(rec, p, s, S_AXIS) == 1u ? t : row;
    uint32_t ranges = field(rec, p, s, S_RANGES_OFF), count = field(rec, p, s, S_RANGES);
    for (uint32_t r = 0; r < count; ++r) {
        if (at >= rec[ranges + 2u * r] && at < rec[ranges + 2u * r + 1u]) {
            dst[field(rec, p, s, S_DST) + row * field(rec, p, s, S_WIDTH) + t] =
                field(rec, p, s, S_FILL);
            return;
        }
    }
}

// The batch's padding: columns past the sample's frames become the pad value.
SLUICE_KERNEL(spectral_pad) {
    uint32_t s = blockIdx.y, x = global_x();
    if (s >= p.samples) return;
    uint32_t width = field(rec, p, s, S_WIDTH), row = x / width, t = x % width;
    if (row < field(rec, p, s, S_ROWS) && t >= field(rec, p, s, S_FRAMES))
        dst[field(rec, p, s, S_DST) + row * width + t] = field(rec, p, s, S_FILL);
}
