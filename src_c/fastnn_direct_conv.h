/* Direct convolution, float32, stride 1, no padding, output rows of >= 8 columns (LeNet's two
 * convolutions), for the forward pass, dW and dX.
 *
 * Why not im2col + GEMM here: im2col writes C*R*S copies of the input (8 MB for LeNet's conv2 at
 * batch 64), OpenBLAS zeroes its output before a beta = 0 GEMM, and the GEMM's (K, N*P*Q)
 * result then needs a second pass into NCHW. Reading the input windows straight from x (a
 * sample's planes stay in L1) and keeping a register tile of outputs does the same FMAs with
 * none of those passes (bench/bench_conv.py, groups "conv-direct").
 *
 * Output positions are L-wide vectors along a row (L = 8 or 16 lanes): row p, columns
 * q0..q0+L-1 with q0 = 0, L, ... and, when Q is not a multiple of L, a last vector at q0 = Q - L
 * that overlaps the one before (the forward recomputes those lanes to the same values; dW and dX
 * mask them out so nothing is counted twice).
 *
 * Forward tile: FWD_KB filters x FWD_VB vectors = 12 accumulators; per tap (c, r, s) it loads
 * FWD_VB input vectors and broadcasts FWD_KB weights. dW tile: DW_KB filters x DW_TB taps = 12
 * or 25 accumulators (below), summed over (n, vector) and reduced across lanes once per tile
 * and sample chunk.
 * The bodies (fastnn_direct_conv_lanes.h) are compiled three times: the build's baseline and
 * AVX2+FMA with 8 lanes, AVX-512 with 16, and picked at run time (fastnn_cpu.h); conv.pyx uses
 * these kernels only where a vector clone runs (the baseline build is correct but slow).
 */
#ifndef FASTNN_DIRECT_CONV_H
#define FASTNN_DIRECT_CONV_H
#include <string.h>
#include "fastnn_cpu.h"

#define FASTNN_DCONV_FWD_KB 4
#define FASTNN_DCONV_FWD_VB 3
#define FASTNN_DCONV_DX_SB 5
#define FASTNN_DCONV_DX_VB 4
/* The dW and dX tiles. A build whose flags give every clone 32 vector registers (AVX-512 in the
 * build's own flags, as -march=native gives on an AVX-512 CPU) sums dW over 5 filters x 5 taps
 * = 25 accumulators and dX over up to 20 (5 taps x 4 vectors); else 3 x 4 = 12 and 12, which
 * with their loads fit the 16 registers of AVX2. Each (sample, filter, row) vector of dy then
 * serves 5 taps and each x vector 5 filters: LeNet's conv2 dW had been waiting on L2 (median
 * 46 -> 69 GFLOP/s on one thread, docs/kernels.md "Register tiles"). */
#ifdef __AVX512F__
#define FASTNN_DCONV_DW_KB 5
#define FASTNN_DCONV_DW_TB 5
#define FASTNN_DCONV_DX_ACC 20
#else
#define FASTNN_DCONV_DW_KB 3
#define FASTNN_DCONV_DW_TB 4
#define FASTNN_DCONV_DX_ACC 12
#endif

/* Whether each piece runs its 16-lane AVX-512 clone when FASTNN_ISA is unset (fastnn_cpu.h):
 * only where it measured at least as fast as the 8-lane AVX2 clone (docs/kernels.md). None did
 * on the AMD EPYC it was measured on: its 512-bit FMAs give the same 114 GFLOP/s as 256-bit
 * ones, and LeNet's conv1 rows (Q = 24) take 2 x 16 lanes against 3 x 8 (forward 0.86-0.94x,
 * dW and dX 0.8-1.2x, round to round). */
#define FASTNN_DCONV_FWD_AVX512_BY_DEFAULT 0
#define FASTNN_DCONV_DW_AVX512_BY_DEFAULT 0
#define FASTNN_DCONV_DX_AVX512_BY_DEFAULT 0

/* fastnn_dconv_dw's `accumulate`: the first chunk of samples stores its sums, later chunks add. */
enum { FASTNN_DCONV_DW_STORE = 0, FASTNN_DCONV_DW_ADD = 1 };

typedef struct {
    long C, H, W, K, R, S, P, Q;
} fastnn_dconv_geom;

/* Keeps v in a register: left to itself gcc folds the tile's loads into every FMA that uses
 * them (12 loads per tap instead of 3: load-bound, 52 instead of 96 GFLOP/s for LeNet's conv2
 * forward). Only in the vector clones (avx = 1): a 32-byte register does not exist without AVX.
 * "v": any vector register, so the AVX-512 clone may use all 32. */
#define FASTNN_DC_IN_REGISTER(v, avx) \
    do { if (avx) __asm__("" : "+v"(v)); } while (0)

#define FASTNN_DC_CAT_(a, b) a##b
#define FASTNN_DC_CAT(a, b) FASTNN_DC_CAT_(a, b)

/* The bodies, once per width: names ending in _8 (fastnn_dcv8 vectors) for the baseline and
 * AVX2 clones, in _16 (fastnn_dcv16) for the AVX-512 clone, compiled for AVX-512 only. */
#define FASTNN_DC_L 8
#include "fastnn_direct_conv_lanes.h"
#undef FASTNN_DC_L
#ifdef FASTNN_HAVE_X86_CLONES
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx2,fma")
#define FASTNN_DC_L 16
#include "fastnn_direct_conv_lanes.h"
#undef FASTNN_DC_L
#pragma GCC pop_options
#endif

/* ---- the builds, picked once at run time ------------------------------------------------- */
#ifdef FASTNN_HAVE_X86_CLONES
FASTNN_TARGET_AVX2 static void fastnn_dconv_fwd_avx2(
        const fastnn_dconv_geom *g, float *y, const float *x, const float *w, const float *b,
        long k0, int kb) {
    fastnn_dconv_fwd_body_8(1, g, y, x, w, b, k0, kb);
}
FASTNN_TARGET_AVX2 static void fastnn_dconv_dw_avx2(
        const fastnn_dconv_geom *g, float *dw, const float *dy, const float *x, long k0, int kb,
        long t0, int tb, long n0, long n1, int accumulate) {
    fastnn_dconv_dw_body_8(1, g, dw, dy, x, k0, kb, t0, tb, n0, n1, accumulate);
}
FASTNN_TARGET_AVX2 static void fastnn_dconv_dx_avx2(
        const fastnn_dconv_geom *g, float *dxc, const float *dyn, const float *w, long c) {
    fastnn_dconv_dx_body_8(1, g, dxc, dyn, w, c);
}
FASTNN_TARGET_AVX512 static void fastnn_dconv_fwd_avx512(
        const fastnn_dconv_geom *g, float *y, const float *x, const float *w, const float *b,
        long k0, int kb) {
    fastnn_dconv_fwd_body_16(1, g, y, x, w, b, k0, kb);
}
FASTNN_TARGET_AVX512 static void fastnn_dconv_dw_avx512(
        const fastnn_dconv_geom *g, float *dw, const float *dy, const float *x, long k0, int kb,
        long t0, int tb, long n0, long n1, int accumulate) {
    fastnn_dconv_dw_body_16(1, g, dw, dy, x, k0, kb, t0, tb, n0, n1, accumulate);
}
FASTNN_TARGET_AVX512 static void fastnn_dconv_dx_avx512(
        const fastnn_dconv_geom *g, float *dxc, const float *dyn, const float *w, long c) {
    fastnn_dconv_dx_body_16(1, g, dxc, dyn, w, c);
}
#endif

static void fastnn_dconv_dx_base(const fastnn_dconv_geom *g, float *dxc, const float *dyn,
                                 const float *w, long c) {
    fastnn_dconv_dx_body_8(0, g, dxc, dyn, w, c);
}

static void fastnn_dconv_fwd_base(const fastnn_dconv_geom *g, float *y, const float *x,
                                  const float *w, const float *b, long k0, int kb) {
    fastnn_dconv_fwd_body_8(0, g, y, x, w, b, k0, kb);
}

static void fastnn_dconv_dw_base(const fastnn_dconv_geom *g, float *dw, const float *dy,
                                 const float *x, long k0, int kb, long t0, int tb, long n0,
                                 long n1, int accumulate) {
    fastnn_dconv_dw_body_8(0, g, dw, dy, x, k0, kb, t0, tb, n0, n1, accumulate);
}

/* 1: a vector clone (AVX2 or AVX-512) runs here, so conv.pyx may choose these kernels. */
static int fastnn_dconv_vector(void) {
    return fastnn_isa() >= FASTNN_ISA_AVX2;
}

/* The 16-lane clone for this geometry? Only for rows of Q >= 16: the last vector of a row starts
 * at Q - L, so no vector may be wider than its row. Narrower rows (LeNet's conv2: Q = 8) run the
 * 8-lane AVX2 clone even where AVX-512 is picked: 16 lanes spanning two output rows would need
 * two input loads and an insert per vector, on the tile's load-bound inner loop. */
static inline int fastnn_dconv_wide(const fastnn_dconv_geom *g, int by_default) {
    return g->Q >= 16 && fastnn_isa_use_avx512(by_default);
}

enum { FASTNN_DCONV_PIECE_FWD = 0, FASTNN_DCONV_PIECE_DW = 1, FASTNN_DCONV_PIECE_DX = 2 };

/* The level a piece (FASTNN_DCONV_PIECE_*) runs for this geometry (FASTNN_ISA_*), for the
 * dispatch report (ops.conv2d_algorithms) and the tests. */
static int fastnn_dconv_isa(const fastnn_dconv_geom *g, int piece) {
    static const int by_default[3] = {FASTNN_DCONV_FWD_AVX512_BY_DEFAULT,
                                      FASTNN_DCONV_DW_AVX512_BY_DEFAULT,
                                      FASTNN_DCONV_DX_AVX512_BY_DEFAULT};
    if (!fastnn_dconv_vector())
        return FASTNN_ISA_BASELINE;
    return fastnn_dconv_wide(g, by_default[piece]) ? FASTNN_ISA_AVX512 : FASTNN_ISA_AVX2;
}

/* y[n] filters [k0, k0 + kb), kb <= FASTNN_DCONV_FWD_KB: x and y point at sample n. */
static void fastnn_dconv_forward(const fastnn_dconv_geom *g, float *y, const float *x,
                                 const float *w, const float *b, long k0, int kb) {
#ifdef FASTNN_HAVE_X86_CLONES
    if (fastnn_dconv_wide(g, FASTNN_DCONV_FWD_AVX512_BY_DEFAULT)) {
        fastnn_dconv_fwd_avx512(g, y, x, w, b, k0, kb);
        return;
    }
    if (fastnn_dconv_vector()) {
        fastnn_dconv_fwd_avx2(g, y, x, w, b, k0, kb);
        return;
    }
#endif
    fastnn_dconv_fwd_base(g, y, x, w, b, k0, kb);
}

/* dw block [k0, k0+kb) x [t0, t0+tb) over samples [n0, n1); dy, x point at sample 0. */
static void fastnn_dconv_dw(const fastnn_dconv_geom *g, float *dw, const float *dy, const float *x,
                            long k0, int kb, long t0, int tb, long n0, long n1, int accumulate) {
#ifdef FASTNN_HAVE_X86_CLONES
    if (fastnn_dconv_wide(g, FASTNN_DCONV_DW_AVX512_BY_DEFAULT)) {
        fastnn_dconv_dw_avx512(g, dw, dy, x, k0, kb, t0, tb, n0, n1, accumulate);
        return;
    }
    if (fastnn_dconv_vector()) {
        fastnn_dconv_dw_avx2(g, dw, dy, x, k0, kb, t0, tb, n0, n1, accumulate);
        return;
    }
#endif
    fastnn_dconv_dw_base(g, dw, dy, x, k0, kb, t0, tb, n0, n1, accumulate);
}

/* dx plane c of sample n (dxc points at it, dyn at dy[n]), overwritten. */
static void fastnn_dconv_dx(const fastnn_dconv_geom *g, float *dxc, const float *dyn, const float *w,
                            long c) {
#ifdef FASTNN_HAVE_X86_CLONES
    if (fastnn_dconv_wide(g, FASTNN_DCONV_DX_AVX512_BY_DEFAULT)) {
        fastnn_dconv_dx_avx512(g, dxc, dyn, w, c);
        return;
    }
    if (fastnn_dconv_vector()) {
        fastnn_dconv_dx_avx2(g, dxc, dyn, w, c);
        return;
    }
#endif
    fastnn_dconv_dx_base(g, dxc, dyn, w, c);
}

#endif
