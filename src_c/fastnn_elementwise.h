/* The float32 activation passes (src_c/activation.pyx's ReLU, sigmoid and tanh, forward and
 * backward) over a flat span, compiled three times like the other vector kernels
 * (fastnn_cpu.h): the build's baseline, AVX2 (8 lanes) and AVX-512 (16 lanes), picked at run
 * time. The same C in every build, and every lane does the same operations as a scalar
 * iteration, so the AVX2 and AVX-512 builds give the same bits, and so does the baseline one
 * when the build's flags have FMA (-march=native; tests/test_isa.py).
 *
 * Which build runs by default: these passes read and write each value once, and on the
 * development host (AMD EPYC, 512-bit FMAs double-pumped) the AVX-512 build measured no faster
 * than the AVX2 one (docs/kernels.md), so with FASTNN_ISA unset the AVX2 build runs
 * (FASTNN_EW_AVX512_BY_DEFAULT), as for the direct convolution.
 */
#ifndef FASTNN_ELEMENTWISE_H
#define FASTNN_ELEMENTWISE_H
#include <math.h>
#include "fastnn_cpu.h"
#include "fastnn_expf.h"

#define FASTNN_EW_AVX512_BY_DEFAULT 0

/* The ops, in pairs (forward, backward) in the order of _elementwise.pxd's ACT_RELU, ACT_SIGMOID,
 * ACT_TANH: activation.pyx maps op // 2 and op % 2 onto those for its float64 path. */
enum {
    FASTNN_EW_RELU_FORWARD = 0,
    FASTNN_EW_RELU_BACKWARD = 1,
    FASTNN_EW_SIGMOID_FORWARD = 2,
    FASTNN_EW_SIGMOID_BACKWARD = 3,
    FASTNN_EW_TANH_FORWARD = 4,
    FASTNN_EW_TANH_BACKWARD = 5
};

/* out[:n] = op(a[:n]) (forward: a = x) or op(a[:n], y[:n]) (backward: a = dy, y = the forward's
 * output). The switch outside each loop, so every loop vectorises (tanhf stays a libm call). */
static inline __attribute__((always_inline)) void fastnn_ew_body(int op, float *out, const float *a,
                                                                  const float *y, long n) {
    long i;
    switch (op) {
    case FASTNN_EW_RELU_FORWARD:  /* branch-free: a branch on the sign mispredicts half the time */
        for (i = 0; i < n; i++)
            out[i] = a[i] * (float)(a[i] > 0);
        break;
    case FASTNN_EW_RELU_BACKWARD:
        for (i = 0; i < n; i++)
            out[i] = a[i] * (float)(y[i] > 0);
        break;
    case FASTNN_EW_SIGMOID_FORWARD:
        for (i = 0; i < n; i++)
            out[i] = 1.0f / (1.0f + fastnn_expf(-a[i]));
        break;
    case FASTNN_EW_SIGMOID_BACKWARD:
        for (i = 0; i < n; i++)
            out[i] = a[i] * y[i] * (1.0f - y[i]);
        break;
    case FASTNN_EW_TANH_FORWARD:
        for (i = 0; i < n; i++)
            out[i] = tanhf(a[i]);
        break;
    case FASTNN_EW_TANH_BACKWARD:
        for (i = 0; i < n; i++)
            out[i] = a[i] * (1.0f - y[i] * y[i]);
        break;
    }
}

#ifdef FASTNN_HAVE_X86_CLONES
FASTNN_TARGET_AVX512 static void fastnn_ew_avx512(int op, float *out, const float *a, const float *y,
                                                  long n) {
    fastnn_ew_body(op, out, a, y, n);
}
FASTNN_TARGET_AVX2 static void fastnn_ew_avx2(int op, float *out, const float *a, const float *y,
                                              long n) {
    fastnn_ew_body(op, out, a, y, n);
}
#endif

static void fastnn_ew_base(int op, float *out, const float *a, const float *y, long n) {
    fastnn_ew_body(op, out, a, y, n);
}

/* The level the passes run at (FASTNN_ISA_*), for fastnn.info(). */
static int fastnn_ew_isa(void) {
    if (fastnn_isa_use_avx512(FASTNN_EW_AVX512_BY_DEFAULT))
        return FASTNN_ISA_AVX512;
    return fastnn_isa() >= FASTNN_ISA_AVX2 ? FASTNN_ISA_AVX2 : FASTNN_ISA_BASELINE;
}

static inline void fastnn_ew_span(int op, float *out, const float *a, const float *y, long n) {
#ifdef FASTNN_HAVE_X86_CLONES
    switch (fastnn_ew_isa()) {
    case FASTNN_ISA_AVX512: fastnn_ew_avx512(op, out, a, y, n); return;
    case FASTNN_ISA_AVX2: fastnn_ew_avx2(op, out, a, y, n); return;
    }
#endif
    fastnn_ew_base(op, out, a, y, n);
}

#endif
