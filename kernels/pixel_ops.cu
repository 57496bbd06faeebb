// RandomGrayscale, GaussianBlur, and the copy behind CenterCrop and horizontal flip. The CUDA
// twin of shaders/pixel_ops.wgsl (same records, same arithmetic as src/ops/).

__device__ uint32_t clamp_pixel(const uint32_t* rec, const Params& p, uint32_t s, uint32_t g, uint32_t k) {
    uint32_t last = pixels_of(rec, p, s) - 1u;
    return g * 4u + k < last ? g * 4u + k : last;
}

SLUICE_KERNEL(grayscale) {
    uint32_t s = blockIdx.y, g = global_x();
    if (s >= p.samples || g >= groups_of(rec, p, s) || field(rec, p, s, FLAG) == 0u) return;
    uint32_t off = field(rec, p, s, DST_OFF), v[12];
    for (uint32_t k = 0; k < 4u; ++k) {
        uint32_t i = clamp_pixel(rec, p, s, g, k) * 3u;
        float l = 0.2989f * (float)byte_at(dst, off, i) + 0.587f * (float)byte_at(dst, off, i + 1u) +
                  0.114f * (float)byte_at(dst, off, i + 2u);
        uint32_t y = (uint32_t)floor(l);
        v[k * 3u] = y; v[k * 3u + 1u] = y; v[k * 3u + 2u] = y;
    }
    store_group(dst, off, g, v);
}

// Horizontal pass into aux: centre tap, then each symmetric pair summed before weighting.
SLUICE_KERNEL(blur_h) {
    uint32_t s = blockIdx.y, pix = global_x();
    if (s >= p.samples || pix >= pixels_of(rec, p, s) || field(rec, p, s, FLAG) == 0u) return;
    uint32_t w = field(rec, p, s, WIDTH), x = pix % w, y = pix / w, half = p.taps / 2u;
    uint32_t off = field(rec, p, s, DST_OFF);
    for (uint32_t c = 0; c < 3u; ++c) {
        float sum = field_f(rec, p, s, EXTRA + half) * (float)byte_at(dst, off, pix * 3u + c);
        for (uint32_t j = 1; j <= half; ++j) {
            uint32_t l = reflect_index((int32_t)x - (int32_t)j, w);
            uint32_t r = reflect_index((int32_t)x + (int32_t)j, w);
            float pair = (float)byte_at(dst, off, (y * w + l) * 3u + c) +
                         (float)byte_at(dst, off, (y * w + r) * 3u + c);
            sum += field_f(rec, p, s, EXTRA + half + j) * pair;
        }
        aux[field(rec, p, s, AUX_OFF) + pix * 3u + c] = sum;
    }
}

// Vertical pass from aux back into the image, rounded half to even.
SLUICE_KERNEL(blur_v) {
    uint32_t s = blockIdx.y, g = global_x();
    if (s >= p.samples || g >= groups_of(rec, p, s) || field(rec, p, s, FLAG) == 0u) return;
    uint32_t w = field(rec, p, s, WIDTH), h = field(rec, p, s, HEIGHT), half = p.taps / 2u;
    // Unrolled so `v` is indexed by constants and stays in registers.
    uint32_t v[12];
#pragma unroll
    for (uint32_t k = 0; k < 4u; ++k) {
        uint32_t pix = clamp_pixel(rec, p, s, g, k), x = pix % w, y = pix / w;
#pragma unroll
        for (uint32_t c = 0; c < 3u; ++c) {
            float sum = 0.0f;
            for (uint32_t t = 0; t < p.taps; ++t) {
                uint32_t sy = reflect_index((int32_t)y + (int32_t)t - (int32_t)half, h);
                sum += field_f(rec, p, s, EXTRA + t) * aux[field(rec, p, s, AUX_OFF) + (sy * w + x) * 3u + c];
            }
            v[k * 3u + c] = (uint32_t)rintf_even(fmin(fmax(sum, 0.0f), 255.0f));
        }
    }
    store_group(dst, field(rec, p, s, DST_OFF), g, v);
}

// Out of place: output (x, y) = source (x' + left, y + top), x' mirrored when the flag is set;
// zero outside the source (CenterCrop's padding).
SLUICE_KERNEL(copy_crop) {
    uint32_t s = blockIdx.y, g = global_x();
    if (s >= p.samples || g >= groups_of(rec, p, s)) return;
    uint32_t w = field(rec, p, s, WIDTH);
    int32_t sw = (int32_t)field(rec, p, s, SRC_W), sh = (int32_t)field(rec, p, s, SRC_H);
    int32_t left = (int32_t)field_f(rec, p, s, LEFT), top = (int32_t)field_f(rec, p, s, TOP);
    uint32_t so = field(rec, p, s, SRC_OFF), v[12];
    for (uint32_t k = 0; k < 4u; ++k) {
        uint32_t pix = clamp_pixel(rec, p, s, g, k), x = pix % w;
        if (field(rec, p, s, FLAG) != 0u) x = w - 1u - x;
        int32_t sx = (int32_t)x + left, sy = (int32_t)(pix / w) + top;
        bool inside = sx >= 0 && sx < sw && sy >= 0 && sy < sh;
        for (uint32_t c = 0; c < 3u; ++c)
            v[k * 3u + c] = inside ? byte_at(src, so, ((uint32_t)sy * (uint32_t)sw + (uint32_t)sx) * 3u + c) : 0u;
    }
    store_group(dst, field(rec, p, s, DST_OFF), g, v);
}
