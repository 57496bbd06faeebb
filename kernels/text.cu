// Token batches: padding ragged ids into the batch's `[n, width]` matrix, BERT's MLM
// corruption, the embedding lookup (gather). The CUDA twin of shaders/text.wgsl: the same
// records (T_* fields), passes and integer arithmetic, bit-exact with the CPU; the host side is
// src/backend/wgpu/text.rs.

#define T_DST 0u
#define T_LEN 1u
#define T_SRC 2u
#define T_WIDTH 3u
#define T_LABEL_SRC 4u
#define T_LABEL_DST 5u
#define T_PAD_ID 6u
#define T_KEY0 7u
#define T_KEY1 8u
#define T_C1 9u
#define T_C2 10u
#define T_C3 11u
#define T_TABLE 12u
#define T_OUT 7u
#define T_DIM 8u
#define T_ROWS 9u
#define T_PAD_VALUE 10u
#define T_NONE 0xFFFFFFFFu
#define T_IGNORE 0xFFFFFF9Cu

#ifdef SLUICE_EMULATION
static inline uint32_t __umulhi(uint32_t a, uint32_t b) {
    return (uint32_t)(((uint64_t)a * b) >> 32);
}
#endif

// Philox 4x32-10, as src/rng.rs philox4x32.
__device__ void philox(uint32_t c[4], uint32_t k0, uint32_t k1) {
    for (uint32_t round = 0; round < 10u; ++round) {
        if (round > 0u) {
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        const uint32_t m0 = 0xD2511F53u, m1 = 0xCD9E8D57u;
        uint32_t c0 = c[0], c1 = c[1], c2 = c[2], c3 = c[3];
        c[0] = __umulhi(m1, c2) ^ c1 ^ k0;
        c[1] = m1 * c2;
        c[2] = __umulhi(m0, c0) ^ c3 ^ k1;
        c[3] = m0 * c0;
    }
}

// `w` below the threshold at rec[at] (lo) and rec[at + 1] (hi: 2^32).
__device__ bool token_below(const uint32_t* rec, uint32_t w, uint32_t at) {
    return rec[at + 1u] != 0u || w < rec[at];
}

__device__ bool token_is_special(const uint32_t* rec, uint32_t table, uint32_t id) {
    uint32_t lo = 0u, hi = rec[table + 8u];
    const uint32_t* ids = rec + table + 9u;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2u;
        if (ids[mid] == id) return true;
        if (ids[mid] < id) lo = mid + 1u;
        else hi = mid;
    }
    return false;
}

SLUICE_KERNEL(token_pad) {
    uint32_t s = blockIdx.y, j = global_x();
    if (s >= p.samples || j >= field(rec, p, s, T_WIDTH)) return;
    uint32_t len = field(rec, p, s, T_LEN);
    dst[field(rec, p, s, T_DST) + j] =
        j < len ? src[field(rec, p, s, T_SRC) + j] : field(rec, p, s, T_PAD_ID);
    uint32_t labels = field(rec, p, s, T_LABEL_DST);
    if (labels != T_NONE) {
        uint32_t from = field(rec, p, s, T_LABEL_SRC);
        dst[labels + j] = (j < len && from != T_NONE) ? src[from + j] : T_IGNORE;
    }
}

SLUICE_KERNEL(token_mlm) {
    uint32_t s = blockIdx.y, j = global_x();
    if (s >= p.samples || j >= field(rec, p, s, T_LEN)) return;
    uint32_t table = field(rec, p, s, T_TABLE);
    uint32_t w[4] = {j, field(rec, p, s, T_C1), field(rec, p, s, T_C2), field(rec, p, s, T_C3)};
    philox(w, field(rec, p, s, T_KEY0), field(rec, p, s, T_KEY1));
    uint32_t at = field(rec, p, s, T_DST) + j;
    uint32_t original = dst[at], label = T_IGNORE;
    if (token_below(rec, w[0], table) && !token_is_special(rec, table, original)) {
        label = original;
        if (token_below(rec, w[1], table + 2u)) dst[at] = rec[table + 6u];
        else if (token_below(rec, w[1], table + 4u)) dst[at] = __umulhi(w[2], rec[table + 7u]);
    }
    dst[field(rec, p, s, T_LABEL_DST) + j] = label;
}

// A grid-stride loop over the sample's `[width, dim]` output words.
SLUICE_KERNEL(token_gather) {
    uint32_t s = blockIdx.y;
    if (s >= p.samples) return;
    uint32_t dim = field(rec, p, s, T_DIM), total = field(rec, p, s, T_WIDTH) * dim;
    uint32_t len = field(rec, p, s, T_LEN), ids = field(rec, p, s, T_DST);
    uint32_t out = field(rec, p, s, T_OUT), rows = field(rec, p, s, T_ROWS);
    for (uint32_t x = global_x(); x < total; x += gridDim.x * blockDim.x) {
        uint32_t j = x / dim, v = field(rec, p, s, T_PAD_VALUE);
        if (j < len) {
            uint32_t token = dst[ids + j];
            // The host checked every id; an unchecked one shows as NaN, never a stray read.
            v = token < rows ? __float_as_uint(aux[(size_t)token * dim + x % dim]) : 0x7FC00000u;
        }
        dst[out + x] = v;
    }
}
