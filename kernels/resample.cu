// Crop + resize from a ragged u8 batch with the CPU resizer's fixed-point weights (bit-exact
// with the CPU path), the tensor write (normalize / cast to u8, f16, bf16, f32; CHW or HWC;
// per-sample flip), the two fused (mode 1), and `fill` (checking mode). The CUDA twin of
// shaders/resample.wgsl; see that file and src/ops/resample.rs (AxisWeights) for the arithmetic.

__device__ int32_t clip_u8(int32_t sum, uint32_t shift) {
    int32_t v = sum >> shift;
    return v < 0 ? 0 : (v > 255 ? 255 : v);
}

// Word offset of output coordinate o's entry in the table at field `tab` (window at `win`).
__device__ uint32_t entry_of(const uint32_t* rec, const Params& p, uint32_t s, uint32_t tab,
                             uint32_t win, uint32_t o) {
    return field(rec, p, s, tab) + o * (field(rec, p, s, win) + 2u);
}

SLUICE_KERNEL(fill) {
    uint32_t i = (blockIdx.y * gridDim.x + blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < p.total_words) dst[i] = p.mode;  // the poison word
}

// One thread per (output row, kept source column): vertical pass, u8 result into aux.
SLUICE_KERNEL(resample_vertical) {
    uint32_t s = blockIdx.y, i = global_x();
    uint32_t cols = field(rec, p, s, COLS);
    if (s >= p.samples || i >= field(rec, p, s, HEIGHT) * cols) return;
    uint32_t x = field(rec, p, s, COL0) + i % cols;
    uint32_t e = entry_of(rec, p, s, V_TAB, WIN_V, i / cols);
    uint32_t first = rec[e], n = rec[e + 1u], shift = field(rec, p, s, PREC_V);
    int32_t acc[3] = {1 << (shift - 1u), 1 << (shift - 1u), 1 << (shift - 1u)};
    uint32_t sw = field(rec, p, s, SRC_W), so = field(rec, p, s, SRC_OFF);
    for (uint32_t k = 0; k < n; ++k) {
        int32_t w = (int32_t)rec[e + 2u + k];
        uint32_t b = ((first + k) * sw + x) * 3u;
        for (uint32_t c = 0; c < 3u; ++c) acc[c] += w * (int32_t)byte_at(src, so, b + c);
    }
    uint32_t a = field(rec, p, s, AUX_OFF) + i * 3u;
    for (uint32_t c = 0; c < 3u; ++c) aux[a + c] = (float)clip_u8(acc[c], shift);
}

// Horizontal pass for output pixel (x, y), channel c, from the columns left in aux.
__device__ float resampled(const uint32_t* rec, const float* aux, const Params& p, uint32_t s,
                           uint32_t x, uint32_t y, uint32_t c) {
    uint32_t col0 = field(rec, p, s, COL0), cols = field(rec, p, s, COLS);
    uint32_t e = entry_of(rec, p, s, H_TAB, WIN_H, x);
    uint32_t first = rec[e], n = rec[e + 1u], shift = field(rec, p, s, PREC_H);
    int32_t acc = 1 << (shift - 1u);
    uint32_t base = field(rec, p, s, AUX_OFF);
    for (uint32_t k = 0; k < n; ++k) {
        int32_t v = (int32_t)aux[base + (y * cols + first + k - col0) * 3u + c];
        acc += (int32_t)rec[e + 2u + k] * v;
    }
    return (float)clip_u8(acc, shift);
}

SLUICE_KERNEL(resample_horizontal) {
    uint32_t s = blockIdx.y, g = global_x();
    if (s >= p.samples || g >= groups_of(rec, p, s)) return;
    uint32_t ow = field(rec, p, s, WIDTH), last = pixels_of(rec, p, s) - 1u;
    uint32_t v[12];
    for (uint32_t k = 0; k < 4u; ++k) {
        uint32_t pix = g * 4u + k < last ? g * 4u + k : last;
        for (uint32_t c = 0; c < 3u; ++c) v[k * 3u + c] = (uint32_t)resampled(rec, aux, p, s, pix % ow, pix / ow, c);
    }
    store_group(dst, field(rec, p, s, DST_OFF), g, v);
}

// Round-to-nearest-even f32 → bf16 bits, and → f16 bits (normal, subnormal, overflow to inf).
__device__ uint32_t bf16_bits(float v) {
    uint32_t b = __float_as_uint(v);
    return (b + 0x7FFFu + ((b >> 16) & 1u)) >> 16;
}
__device__ uint32_t f16_bits(float v) {
    uint32_t b = __float_as_uint(v);
    uint32_t sign = (b >> 16) & 0x8000u;
    uint32_t mag = b & 0x7FFFFFFFu;
    if (mag >= 0x7F800000u) return sign | (mag > 0x7F800000u ? 0x7E00u : 0x7C00u);
    if (mag >= 0x477FF000u) return sign | 0x7C00u; // rounds past the largest half
    if (mag < 0x38800000u) {                      // subnormal half (or zero)
        float f = fabs(v) * 16777216.0f;          // 2^24: one unit = the smallest subnormal
        return sign | (uint32_t)rintf_even(f);
    }
    uint32_t r = mag + 0xFFFu + ((mag >> 13) & 1u); // round mantissa 23 → 10 bits, ties to even
    return sign | ((r - 0x38000000u) >> 13);
}

__device__ float tensor_value(const uint32_t* src, const uint32_t* rec, const float* aux,
                              const Params& p, uint32_t s, uint32_t e) {
    uint32_t w = field(rec, p, s, WIDTH), plane = w * field(rec, p, s, HEIGHT);
    uint32_t c = e % 3u, pix = e / 3u;
    if (p.chw == 1u) { c = e / plane; pix = e % plane; }
    uint32_t x = pix % w, y = pix / w;
    if (field(rec, p, s, FLAG) != 0u) x = w - 1u - x;
    float u = p.mode == 1u ? resampled(rec, aux, p, s, x, y, c)
                           : (float)byte_at(src, field(rec, p, s, SRC_OFF), (y * w + x) * 3u + c);
    // Selected, not indexed: a dynamic index into the by-value Params block would copy it to
    // local memory.
    float scale = c == 0u ? p.scale[0] : (c == 1u ? p.scale[1] : p.scale[2]);
    float bias = c == 0u ? p.bias[0] : (c == 1u ? p.bias[1] : p.bias[2]);
    return u * scale + bias;
}

__device__ uint32_t u8_bits(float v) {
    return (uint32_t)floor(fmin(fmax(v, 0.0f), 255.0f) + 0.5f);
}

// One thread per output word (1 f32, 2 f16/bf16 or 4 u8 elements).
SLUICE_KERNEL(write_tensor) {
    uint32_t s = blockIdx.y, word = global_x();
    if (s >= p.samples) return;
    uint32_t n = pixels_of(rec, p, s) * 3u;
    uint32_t per_word = p.dtype == 0u ? 4u : (p.dtype == 3u ? 1u : 2u);
    uint32_t e0 = word * per_word;
    if (e0 >= n) return;
    // Four named values, not an array indexed in a loop (which would live in local memory).
    float v0 = tensor_value(src, rec, aux, p, s, e0);
    float v1 = per_word > 1u && e0 + 1u < n ? tensor_value(src, rec, aux, p, s, e0 + 1u) : 0.0f;
    float v2 = per_word > 2u && e0 + 2u < n ? tensor_value(src, rec, aux, p, s, e0 + 2u) : 0.0f;
    float v3 = per_word > 3u && e0 + 3u < n ? tensor_value(src, rec, aux, p, s, e0 + 3u) : 0.0f;
    uint32_t out;
    if (p.dtype == 3u) {
        out = __float_as_uint(v0);
    } else if (p.dtype == 1u) {
        out = f16_bits(v0) | (f16_bits(v1) << 16);
    } else if (p.dtype == 2u) {
        out = bf16_bits(v0) | (bf16_bits(v1) << 16);
    } else {
        out = u8_bits(v0) | (u8_bits(v1) << 8) | (u8_bits(v2) << 16) | (u8_bits(v3) << 24);
    }
    dst[field(rec, p, s, DST_OFF) + word] = out;
}
