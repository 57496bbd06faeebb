// ColorJitter, one adjustment slot per launch (order: extras 0..3, factors: extras 4..7; 4 =
// none). The CUDA twin of shaders/color_jitter.wgsl; formulas as src/ops/color_jitter.rs. The
// contrast mean comes from per-sample luma sums in aux (as u32), zeroed by the host per slot.

__device__ float luma3(float r, float g, float b) { return floor(0.2989f * r + 0.587f * g + 0.114f * b); }

__device__ uint32_t slot_op(const uint32_t* rec, const Params& p, uint32_t s) {
    return field(rec, p, s, EXTRA + p.slot);
}

SLUICE_KERNEL(luma_sum) {
    uint32_t s = blockIdx.y, g = global_x();
    if (s >= p.samples || g >= groups_of(rec, p, s) || slot_op(rec, p, s) != 1u) return;
    uint32_t off = field(rec, p, s, DST_OFF), total = 0;
    for (uint32_t k = 0; k < 4u; ++k) {
        uint32_t pix = g * 4u + k;
        if (pix < pixels_of(rec, p, s)) {
            uint32_t i = pix * 3u;
            total += (uint32_t)luma3((float)byte_at(dst, off, i), (float)byte_at(dst, off, i + 1u),
                                     (float)byte_at(dst, off, i + 2u));
        }
    }
    atomicAdd((unsigned*)aux + s, total);
}

__device__ float blend1(float x, float other, float f) {
    return floor(fmin(fmax(f * x + (1.0f - f) * other, 0.0f), 255.0f));
}

__device__ float wrap_unit(float x) { return x - floor(x); }

__device__ void hue_shift(float c[3], float shift) {
    float r = c[0] / 255.0f, g = c[1] / 255.0f, b = c[2] / 255.0f;
    float maxc = fmax(r, fmax(g, b)), minc = fmin(r, fmin(g, b));
    bool eqc = maxc == minc;
    float cr = maxc - minc;
    float sat = cr / (eqc ? 1.0f : maxc);
    float div = eqc ? 1.0f : cr;
    float rc = (maxc - r) / div, gc = (maxc - g) / div, bc = (maxc - b) / div;
    float h = maxc == g ? 2.0f + rc - bc : 4.0f + gc - rc;
    if (maxc == r) h = bc - gc;
    h = wrap_unit(wrap_unit(h / 6.0f + 1.0f) + shift);
    float v = maxc, i = floor(h * 6.0f), f = h * 6.0f - i;
    float pp = fmin(fmax(v * (1.0f - sat), 0.0f), 1.0f);
    float q = fmin(fmax(v * (1.0f - sat * f), 0.0f), 1.0f);
    float t = fmin(fmax(v * (1.0f - sat * (1.0f - f)), 0.0f), 1.0f);
    float o[3] = {v, t, pp};
    switch ((uint32_t)i % 6u) {
        case 1: o[0] = q; o[1] = v; o[2] = pp; break;
        case 2: o[0] = pp; o[1] = v; o[2] = t; break;
        case 3: o[0] = pp; o[1] = q; o[2] = v; break;
        case 4: o[0] = t; o[1] = pp; o[2] = v; break;
        case 5: o[0] = v; o[1] = pp; o[2] = q; break;
        default: break;
    }
    for (int k = 0; k < 3; ++k) c[k] = floor(fmin(fmax(o[k] * 255.999f, 0.0f), 255.0f));
}

SLUICE_KERNEL(jitter_apply) {
    uint32_t s = blockIdx.y, g = global_x();
    if (s >= p.samples || g >= groups_of(rec, p, s)) return;
    uint32_t op = slot_op(rec, p, s);
    if (op > 3u) return;
    float f = field_f(rec, p, s, EXTRA + 4u + op);
    float mean = (float)((const unsigned*)aux)[s] / (float)pixels_of(rec, p, s);
    uint32_t off = field(rec, p, s, DST_OFF), last = pixels_of(rec, p, s) - 1u, v[12];
    for (uint32_t k = 0; k < 4u; ++k) {
        uint32_t i = (g * 4u + k < last ? g * 4u + k : last) * 3u;
        float c[3] = {(float)byte_at(dst, off, i), (float)byte_at(dst, off, i + 1u), (float)byte_at(dst, off, i + 2u)};
        if (op == 3u) {
            hue_shift(c, f);
        } else {
            float other[3] = {0.0f, 0.0f, 0.0f};
            if (op == 1u) { other[0] = other[1] = other[2] = mean; }
            if (op == 2u) { float l = luma3(c[0], c[1], c[2]); other[0] = other[1] = other[2] = l; }
            for (int k2 = 0; k2 < 3; ++k2) c[k2] = blend1(c[k2], other[k2], f);
        }
        v[k * 3u] = (uint32_t)c[0]; v[k * 3u + 1u] = (uint32_t)c[1]; v[k * 3u + 2u] = (uint32_t)c[2];
    }
    store_group(dst, off, g, v);
}
