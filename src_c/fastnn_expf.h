/* exp(x) for float32 without a libm call, so loops over it vectorise (sigmoid in the dense and
 * activation kernels). glibc's expf is a scalar call: at batch 1000, sigmoid nets spent a third
 * of inference in it and lost to numpy's SIMD exp (spiral: 0.58x numpy).
 *
 * Cephes' expf: exp(x) = 2^n exp(r), n = round(x / ln 2), r = x - n ln 2 in two parts, exp(r)
 * by a degree-6 polynomial (about 1 ulp: max relative error 1.5e-7 against float64 exp on
 * [-87.3, 88]). Branch-free selects: above 88 the result is +inf and below -87.3 it is 0
 * (float32 exp overflows at 88.72 and leaves the normal range at -87.34), so sigmoid
 * saturates to exactly 0 and 1 as with libm; a NaN stays NaN.
 */
#ifndef FASTNN_EXPF_H
#define FASTNN_EXPF_H
#include <stdint.h>
#include <string.h>

/* always_inline: a call (gcc may decline to inline a plain `inline` into a clone with a target
 * attribute) keeps its loop scalar, 10x slower (fastnn_elementwise.h). */
static inline __attribute__((always_inline)) float fastnn_expf(float x_in) {
    const float magic = 12582912.0f;  /* 1.5 * 2^23: adding and subtracting it rounds to an int */
    float x, n, r, p, scale;
    int32_t bits;
    x = x_in > 88.0f ? 88.0f : x_in;  /* clamped so 2^n below stays a normal float; written */
    x = x < -87.3365447505531f ? -87.3365447505531f : x;  /* so that a NaN passes through */
    n = (x * 1.44269504088896341f + magic) - magic;
    r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    bits = ((int32_t)n + 127) << 23;  /* 2^n, n in [-126, 127] */
    memcpy(&scale, &bits, sizeof scale);
    p = p * scale;
    p = x_in > 88.0f ? __builtin_inff() : p;
    return x_in < -87.3365447505531f ? 0.0f : p;
}

#endif
