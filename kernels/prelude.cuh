// Shared by every sluice CUDA kernel; the host prepends it to each .cu before NVRTC compiles
// it (and the host-emulation harness compiles the same text as C++ with SLUICE_EMULATION).
//
// Same data layout and per-sample records as the WGSL kernels (shaders/prelude.wgsl): images are
// packed u8 RGB HWC, each sample at a word offset, padded to whole 4-pixel groups (3 words), so a
// thread that writes one group owns its words; rec[s * p.rec_words + FIELD] describes sample s.
// Kernels are launched with 64 threads per block, grid (ceil(work / 64), samples).

#ifdef SLUICE_EMULATION
#include <cstdint>
#include <cstring>
#include <cmath>
#include <algorithm>
struct sluice_dim3 { unsigned x, y, z; };
extern thread_local sluice_dim3 threadIdx, blockIdx, blockDim, gridDim;
#define __global__
#define __device__ static inline
#define SLUICE_EXTERN extern "C"
// One thread at a time runs in emulation, so plain adds are atomic.
static inline unsigned atomicAdd(unsigned* p, unsigned v) { unsigned old = *p; *p += v; return old; }
static inline float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
static inline unsigned __float_as_uint(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
using std::floor; using std::fabs; using std::fmin; using std::fmax;
static inline float rintf_even(float v) { return std::nearbyint(v); }
#else
typedef unsigned int uint32_t;
typedef int int32_t;
#define SLUICE_EXTERN extern "C"
__device__ __forceinline__ float rintf_even(float v) { return rintf(v); }
#endif

struct Params {
    uint32_t samples, rec_words, taps, slot, mode, dtype, chw, total_words;
    float scale[4];
    float bias[4];
};

// Record fields (words), as src/backend/wgpu/kernels.rs `field`.
#define DST_OFF 0u
#define WIDTH 1u
#define HEIGHT 2u
#define AUX_OFF 3u
#define FLAG 4u
#define SRC_OFF 5u
#define SRC_W 6u
#define SRC_H 7u
#define COL0 8u
#define COLS 9u
#define LEFT 10u
#define TOP 11u
#define H_TAB 10u
#define V_TAB 11u
#define PREC_H 12u
#define PREC_V 13u
#define WIN_H 14u
#define WIN_V 15u
#define EXTRA 16u

// Kernel signature: every kernel binds the same buffers, as the WGSL ones do.
#define SLUICE_KERNEL(name) \
    SLUICE_EXTERN __global__ void name(uint32_t* dst, const uint32_t* src, const uint32_t* rec, \
                                       float* aux, const Params p)

__device__ uint32_t field(const uint32_t* rec, const Params& p, uint32_t s, uint32_t k) {
    return rec[s * p.rec_words + k];
}
__device__ float field_f(const uint32_t* rec, const Params& p, uint32_t s, uint32_t k) {
    return __uint_as_float(field(rec, p, s, k));
}
__device__ uint32_t pixels_of(const uint32_t* rec, const Params& p, uint32_t s) {
    return field(rec, p, s, WIDTH) * field(rec, p, s, HEIGHT);
}
__device__ uint32_t groups_of(const uint32_t* rec, const Params& p, uint32_t s) {
    return (pixels_of(rec, p, s) + 3u) / 4u;
}
// Byte i of a packed image starting at word `off`.
__device__ uint32_t byte_at(const uint32_t* img, uint32_t off, uint32_t i) {
    return (img[off + i / 4u] >> ((i % 4u) * 8u)) & 0xFFu;
}
// Write 12 bytes (4 pixels) as group g of the image at word `off`.
__device__ void store_group(uint32_t* img, uint32_t off, uint32_t g, const uint32_t v[12]) {
    for (uint32_t j = 0; j < 3u; ++j) {
        img[off + g * 3u + j] = v[j * 4u] | (v[j * 4u + 1u] << 8) | (v[j * 4u + 2u] << 16) |
                                (v[j * 4u + 3u] << 24);
    }
}
// Reflect padding without repeating the edge.
__device__ uint32_t reflect_index(int32_t i, uint32_t n) {
    if (n == 1u) return 0u;
    int32_t period = 2 * ((int32_t)n - 1);
    int32_t m = i % period;
    if (m < 0) m += period;
    if (m >= (int32_t)n) m = period - m;
    return (uint32_t)m;
}
__device__ uint32_t global_x() { return blockIdx.x * blockDim.x + threadIdx.x; }
