/* Direct convolution, float32, stride 1, no padding, output rows of >= 8 columns (LeNet's two
 * convolutions), for the forward pass and for dW.
 *
 * Why not im2col + GEMM here: im2col writes C*R*S copies of the input (8 MB for LeNet's conv2 at
 * batch 64), OpenBLAS zeroes its output before a beta = 0 GEMM, and the GEMM's (K, N*P*Q)
 * result then needs a second pass into NCHW. Reading the input windows straight from x (a
 * sample's planes stay in L1) and keeping a register tile of outputs does the same FMAs with
 * none of those passes (bench/bench_conv.py, groups "conv-direct").
 *
 * Output positions are 8-wide vectors along a row: row p, columns q0..q0+7 with q0 = 0, 8, ...
 * and, when Q is not a multiple of 8, a last vector at q0 = Q - 8 that overlaps the one before
 * (the forward recomputes those lanes to the same values; dW masks them out so nothing is
 * counted twice).
 *
 * Forward tile: FWD_KB filters x FWD_VB vectors = 12 accumulators; per tap (c, r, s) it loads
 * FWD_VB input vectors and broadcasts FWD_KB weights. dW tile: DW_KB filters x DW_TB taps = 12
 * accumulators, summed over (n, vector) and reduced across lanes once per tile and sample chunk.
 * Same build scheme as fastnn_small_gemm.h: an AVX2+FMA clone picked at run time; conv.pyx
 * uses these kernels only where that clone runs (the baseline build is correct but slow).
 */
#ifndef FASTNN_DIRECT_CONV_H
#define FASTNN_DIRECT_CONV_H
#include <string.h>
#include "fastnn_cpu.h"

#define FASTNN_DCONV_FWD_KB 4
#define FASTNN_DCONV_FWD_VB 3
#define FASTNN_DCONV_DW_KB 3
#define FASTNN_DCONV_DW_TB 4
#define FASTNN_DCONV_DX_SB 5
#define FASTNN_DCONV_DX_VB 4

/* fastnn_dconv_dw's `accumulate`: the first chunk of samples stores its sums, later chunks add. */
enum { FASTNN_DCONV_DW_STORE = 0, FASTNN_DCONV_DW_ADD = 1 };

typedef float fastnn_dc8 __attribute__((vector_size(32)));
typedef int fastnn_dci8 __attribute__((vector_size(32)));

typedef struct {
    long C, H, W, K, R, S, P, Q;
} fastnn_dconv_geom;

/* Keeps v in a register: left to itself gcc folds the tile's loads into every FMA that uses
 * them (12 loads per tap instead of 3: load-bound, 52 instead of 96 GFLOP/s for LeNet's conv2
 * forward). Only in the AVX2 build (avx = 1): a 32-byte register does not exist without AVX. */
#define FASTNN_DC_IN_REGISTER(v, avx) \
    do { if (avx) __asm__("" : "+x"(v)); } while (0)

static inline __attribute__((always_inline)) fastnn_dc8 fastnn_dc_load(const float *p) {
    fastnn_dc8 v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline __attribute__((always_inline)) fastnn_dc8 fastnn_dc_splat(float f) {
    fastnn_dc8 v = {f, f, f, f, f, f, f, f};
    return v;
}

/* Vectors per output row, and the first column of vector j of a row. */
static inline long fastnn_dconv_row_vectors(const fastnn_dconv_geom *g) {
    return (g->Q + 7) / 8;
}

static inline __attribute__((always_inline)) long fastnn_dconv_q0(const fastnn_dconv_geom *g, long j) {
    long q0 = 8 * j;
    return q0 + 8 > g->Q ? g->Q - 8 : q0;
}

/* ---- forward ------------------------------------------------------------------------------ */

/* y (K, P*Q) rows k0..k0+kb of one sample, vectors v0..v0+vb (flat index p * row_vectors + j),
 * from that sample's x (C, H, W): y = b + sum over taps of w * window */
static inline __attribute__((always_inline)) void fastnn_dconv_fwd_tile(
        const int avx, const int kb, const int vb, const fastnn_dconv_geom *g, float *y, const float *x,
        const float *w, const float *b, long k0, long v0) {
    const long rv = fastnn_dconv_row_vectors(g), PQ = g->P * g->Q, HW = g->H * g->W;
    const long CRS = g->C * g->R * g->S;
    fastnn_dc8 acc[FASTNN_DCONV_FWD_KB][FASTNN_DCONV_FWD_VB];
    long in_off[FASTNN_DCONV_FWD_VB], out_off[FASTNN_DCONV_FWD_VB];
    const float *wk[FASTNN_DCONV_FWD_KB];
    int i, j;
    _Pragma("GCC unroll 4")
    for (j = 0; j < vb; j++) {
        long p = (v0 + j) / rv, q0 = fastnn_dconv_q0(g, (v0 + j) % rv);
        in_off[j] = p * g->W + q0;
        out_off[j] = p * g->Q + q0;
    }
    _Pragma("GCC unroll 4")
    for (i = 0; i < kb; i++) {
        wk[i] = w + (k0 + i) * CRS;
        _Pragma("GCC unroll 4")
        for (j = 0; j < vb; j++)
            acc[i][j] = fastnn_dc_splat(b[k0 + i]);
    }
    long t = 0;
    for (long c = 0; c < g->C; c++) {
        for (long r = 0; r < g->R; r++) {
            const float *xr = x + c * HW + r * g->W;
            for (long s = 0; s < g->S; s++, t++) {
                fastnn_dc8 xv[FASTNN_DCONV_FWD_VB];
                _Pragma("GCC unroll 4")
                for (j = 0; j < vb; j++)
                    xv[j] = fastnn_dc_load(xr + s + in_off[j]);
                _Pragma("GCC unroll 4")
                for (j = 0; j < vb; j++)
                    FASTNN_DC_IN_REGISTER(xv[j], avx);
                _Pragma("GCC unroll 4")
                for (i = 0; i < kb; i++) {
                    /* scalar * vector: a broadcast load (a {w, w, ...} vector took 7 inserts in the AVX2
                       clone of a portable build) */
                    float wv = wk[i][t];
                    _Pragma("GCC unroll 4")
                    for (j = 0; j < vb; j++)
                        acc[i][j] += wv * xv[j];
                }
            }
        }
    }
    _Pragma("GCC unroll 4")
    for (i = 0; i < kb; i++)
        _Pragma("GCC unroll 4")
        for (j = 0; j < vb; j++)
            memcpy(y + (k0 + i) * PQ + out_off[j], &acc[i][j], sizeof acc[i][j]);
}

/* All vectors of filters k0..k0+kb (kb <= FWD_KB) for one sample. */
static inline __attribute__((always_inline)) void fastnn_dconv_fwd_body(
        const int avx, const fastnn_dconv_geom *g, float *y, const float *x, const float *w, const float *b,
        long k0, int kb) {
    const long nv = g->P * fastnn_dconv_row_vectors(g);
    long v = 0;
#define FASTNN_DC_FWD_ROW(KB)                                                      \
    for (v = 0; v + FASTNN_DCONV_FWD_VB <= nv; v += FASTNN_DCONV_FWD_VB)           \
        fastnn_dconv_fwd_tile(avx, KB, FASTNN_DCONV_FWD_VB, g, y, x, w, b, k0, v);       \
    if (nv - v == 2) fastnn_dconv_fwd_tile(avx, KB, 2, g, y, x, w, b, k0, v);            \
    else if (nv - v == 1) fastnn_dconv_fwd_tile(avx, KB, 1, g, y, x, w, b, k0, v);
    switch (kb) {
    case 4: FASTNN_DC_FWD_ROW(4) break;
    case 3: FASTNN_DC_FWD_ROW(3) break;
    case 2: FASTNN_DC_FWD_ROW(2) break;
    default: FASTNN_DC_FWD_ROW(1) break;
    }
#undef FASTNN_DC_FWD_ROW
}

/* ---- dW --------------------------------------------------------------------------------------- */

/* dw (K, C*R*S) entries [k0, k0+kb) x [t0, t0+tb) (+)= sum over samples [n0, n1), all
 * vectors, of dy * window; lanes an earlier vector of the row already covered are masked. */
static inline __attribute__((always_inline)) void fastnn_dconv_dw_tile(
        const int avx, const int kb, const int tb, const fastnn_dconv_geom *g, float *dw, const float *dy,
        const float *x, long k0, long t0, long n0, long n1, int accumulate) {
    const long PQ = g->P * g->Q, HW = g->H * g->W;
    const long CHW = g->C * HW, KPQ = g->K * PQ, RS = g->R * g->S, CRS = g->C * RS;
    const fastnn_dci8 lane = {0, 1, 2, 3, 4, 5, 6, 7};
    fastnn_dc8 acc[FASTNN_DCONV_DW_KB][FASTNN_DCONV_DW_TB];
    long tap_off[FASTNN_DCONV_DW_TB];
    int i, j;
    _Pragma("GCC unroll 4")
    for (j = 0; j < tb; j++) {
        long t = t0 + j;
        tap_off[j] = (t / RS) * HW + ((t / g->S) % g->R) * g->W + t % g->S;
    }
    _Pragma("GCC unroll 4")
    for (i = 0; i < kb; i++)
        _Pragma("GCC unroll 4")
        for (j = 0; j < tb; j++)
            acc[i][j] = fastnn_dc_splat(0.0f);
    /* full vectors q0 = 0, 8, ...; then, if Q % 8, one at Q - 8 whose first 8 - Q % 8 lanes the
       previous vector already counted */
    const long full = g->Q / 8;
#define FASTNN_DC_DW_STEP(DY, X, MASKED)                                                   \
    do {                                                                                   \
        fastnn_dc8 dv[FASTNN_DCONV_DW_KB];                                                 \
        _Pragma("GCC unroll 4")                                                            \
        for (i = 0; i < kb; i++) {                                                         \
            dv[i] = fastnn_dc_load((DY) + i * PQ);                                         \
            if (MASKED) dv[i] = (fastnn_dc8)((fastnn_dci8)dv[i] & (lane >= (int)(8 - g->Q % 8))); \
            FASTNN_DC_IN_REGISTER(dv[i], avx);                                             \
        }                                                                                  \
        _Pragma("GCC unroll 4")                                                            \
        for (j = 0; j < tb; j++) {                                                         \
            fastnn_dc8 xv = fastnn_dc_load((X) + tap_off[j]);                              \
            FASTNN_DC_IN_REGISTER(xv, avx);                                                \
            _Pragma("GCC unroll 4")                                                        \
            for (i = 0; i < kb; i++)                                                       \
                acc[i][j] += dv[i] * xv;                                                   \
        }                                                                                  \
    } while (0)
    /* Samples innermost: a regular stride and a trip count of a whole chunk, where rows of one
       vector (LeNet's conv2) left the loop overhead per FMA tile. Two loop nests, so the mask
       is not live (a 17th register: spills) in the main one. */
    for (long p = 0; p < g->P; p++) {
        for (long jv = 0; jv <= full; jv++) {
            long q0 = jv < full ? 8 * jv : g->Q - 8;
            const float *dyv = dy + n0 * KPQ + k0 * PQ + p * g->Q + q0;
            const float *xv0 = x + n0 * CHW + p * g->W + q0;
            if (jv < full) {
                for (long n = n0; n < n1; n++, dyv += KPQ, xv0 += CHW)
                    FASTNN_DC_DW_STEP(dyv, xv0, 0);
            } else if (g->Q % 8) {
                for (long n = n0; n < n1; n++, dyv += KPQ, xv0 += CHW)
                    FASTNN_DC_DW_STEP(dyv, xv0, 1);
            }
        }
    }
#undef FASTNN_DC_DW_STEP
    _Pragma("GCC unroll 4")
    for (i = 0; i < kb; i++) {
        _Pragma("GCC unroll 4")
        for (j = 0; j < tb; j++) {
            fastnn_dc8 a = acc[i][j];
            float sum = ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
            float *out = dw + (k0 + i) * CRS + t0 + j;
            *out = accumulate ? *out + sum : sum;
        }
    }
}

static inline __attribute__((always_inline)) void fastnn_dconv_dw_body(
        const int avx, const fastnn_dconv_geom *g, float *dw, const float *dy, const float *x, long k0, int kb,
        long t0, int tb, long n0, long n1, int accumulate) {
#define FASTNN_DC_DW_TB(KB)                                                                      \
    switch (tb) {                                                                                 \
    case 4: fastnn_dconv_dw_tile(avx, KB, 4, g, dw, dy, x, k0, t0, n0, n1, accumulate); break;         \
    case 3: fastnn_dconv_dw_tile(avx, KB, 3, g, dw, dy, x, k0, t0, n0, n1, accumulate); break;         \
    case 2: fastnn_dconv_dw_tile(avx, KB, 2, g, dw, dy, x, k0, t0, n0, n1, accumulate); break;         \
    default: fastnn_dconv_dw_tile(avx, KB, 1, g, dw, dy, x, k0, t0, n0, n1, accumulate); break;        \
    }
    switch (kb) {
    case 3: FASTNN_DC_DW_TB(3) break;
    case 2: FASTNN_DC_DW_TB(2) break;
    default: FASTNN_DC_DW_TB(1) break;
    }
#undef FASTNN_DC_DW_TB
}

/* ---- dX ----------------------------------------------------------------------------------- */

/* dx plane c of one sample (H, W) += its share from tap row r, columns s0 .. s0+sb, output
 * vectors v0 .. v0+vb: dx[c, p+r, q+s] += sum over k of w[k, c, r, s] * dy[k, p, q]. The
 * transposed convolution as a scatter: each dy vector is read once per (r, s-block) from L1 and
 * the sums over k stay in registers; only the finished tile is added into dx. Lanes that an
 * overlapping last vector repeats are masked to 0 in dy (masked = 1). */
static inline __attribute__((always_inline)) void fastnn_dconv_dx_tile(
        const int avx, const int sb, const int vb, const int masked, const fastnn_dconv_geom *g, float *dxc,
        const float *dyn, const float *w, long c, long r, long s0, long v0) {
    const long rv = fastnn_dconv_row_vectors(g), PQ = g->P * g->Q, CRS = g->C * g->R * g->S;
    const fastnn_dci8 lane = {0, 1, 2, 3, 4, 5, 6, 7};
    fastnn_dc8 acc[FASTNN_DCONV_DX_SB][FASTNN_DCONV_DX_VB];
    fastnn_dci8 keep[FASTNN_DCONV_DX_VB];
    long dy_off[FASTNN_DCONV_DX_VB], dx_off[FASTNN_DCONV_DX_VB];
    int i, j;
    _Pragma("GCC unroll 4")
    for (j = 0; j < vb; j++) {
        long p = (v0 + j) / rv, jv = (v0 + j) % rv, q0 = fastnn_dconv_q0(g, jv);
        dy_off[j] = p * g->Q + q0;
        dx_off[j] = (p + r) * g->W + q0 + s0;
        if (masked)
            keep[j] = lane >= (int)(8 * jv - q0);
    }
    _Pragma("GCC unroll 6")
    for (i = 0; i < sb; i++)
        _Pragma("GCC unroll 4")
        for (j = 0; j < vb; j++)
            acc[i][j] = fastnn_dc_splat(0.0f);
    const float *wk = w + (c * g->R + r) * g->S + s0;
    const float *dyk = dyn;
    for (long k = 0; k < g->K; k++, wk += CRS, dyk += PQ) {
        fastnn_dc8 dv[FASTNN_DCONV_DX_VB];
        _Pragma("GCC unroll 4")
        for (j = 0; j < vb; j++) {
            dv[j] = fastnn_dc_load(dyk + dy_off[j]);
            if (masked)
                dv[j] = (fastnn_dc8)((fastnn_dci8)dv[j] & keep[j]);
            FASTNN_DC_IN_REGISTER(dv[j], avx);
        }
        _Pragma("GCC unroll 6")
        for (i = 0; i < sb; i++) {
            float wv = wk[i];  /* scalar * vector, as in the forward tile */
            _Pragma("GCC unroll 4")
            for (j = 0; j < vb; j++)
                acc[i][j] += wv * dv[j];
        }
    }
    /* acc[i][j] belongs at columns +i: shift each into a 16-lane window (lo, hi) in registers
       and add that into dx once. Adding the shifted vectors into dx one by one made every load
       overlap the store before it (store-forwarding stalls: ~2x slower). */
    const fastnn_dc8 zero = fastnn_dc_splat(0.0f);
    _Pragma("GCC unroll 4")
    for (j = 0; j < vb; j++) {
        fastnn_dc8 lo = acc[0][j], hi = zero;
        _Pragma("GCC unroll 6")
        for (i = 1; i < sb; i++) {
            const fastnn_dci8 to_lo = {i > 0 ? 8 : 0, i > 1 ? 8 : 1 - i, i > 2 ? 8 : 2 - i,
                                       i > 3 ? 8 : 3 - i, 4 - i, 5 - i, 6 - i, 7 - i};
            const fastnn_dci8 to_hi = {8 - i, i > 1 ? 9 - i : 8, i > 2 ? 10 - i : 8,
                                       i > 3 ? 11 - i : 8, i > 4 ? 12 - i : 8, 8, 8, 8};
            lo += __builtin_shuffle(acc[i][j], zero, to_lo);
            hi += __builtin_shuffle(acc[i][j], zero, to_hi);
        }
        float *out = dxc + dx_off[j];
        fastnn_dc8 sum = fastnn_dc_load(out) + lo;
        memcpy(out, &sum, sizeof sum);
        _Pragma("GCC unroll 6")
        for (i = 0; i + 1 < sb; i++)
            out[8 + i] += hi[i];
    }
}

/* Whole dx plane c of one sample, overwritten. */
static inline __attribute__((always_inline)) void fastnn_dconv_dx_body(
        const int avx, const fastnn_dconv_geom *g, float *dxc, const float *dyn, const float *w, long c) {
    const long rv = fastnn_dconv_row_vectors(g), nv = g->P * rv;
    const int tails = g->Q % 8 != 0;
    memset(dxc, 0, g->H * g->W * sizeof(float));
    for (long r = 0; r < g->R; r++) {
        for (long s0 = 0; s0 < g->S; s0 += FASTNN_DCONV_DX_SB) {
            int sb = g->S - s0 < FASTNN_DCONV_DX_SB ? (int)(g->S - s0) : FASTNN_DCONV_DX_SB;
            /* 12 accumulators at most: 5 x 2 or 3 x 4 */
            int vmax = sb <= 3 ? 4 : 2;
            for (long v = 0; v < nv; v += vmax) {
                int vb = nv - v < vmax ? (int)(nv - v) : vmax;
#define FASTNN_DC_DX_CALL(SB, VB)                                                              \
                if (tails) fastnn_dconv_dx_tile(avx, SB, VB, 1, g, dxc, dyn, w, c, r, s0, v);        \
                else fastnn_dconv_dx_tile(avx, SB, VB, 0, g, dxc, dyn, w, c, r, s0, v);
#define FASTNN_DC_DX_VB(SB)                                                                    \
                switch (vb) {                                                                   \
                case 4: FASTNN_DC_DX_CALL(SB, 4) break;                                         \
                case 3: FASTNN_DC_DX_CALL(SB, 3) break;                                         \
                case 2: FASTNN_DC_DX_CALL(SB, 2) break;                                         \
                default: FASTNN_DC_DX_CALL(SB, 1) break;                                        \
                }
                switch (sb) {
                case 5: FASTNN_DC_DX_VB(5) break;
                case 4: FASTNN_DC_DX_VB(4) break;
                case 3: FASTNN_DC_DX_VB(3) break;
                case 2: FASTNN_DC_DX_VB(2) break;
                default: FASTNN_DC_DX_VB(1) break;
                }
#undef FASTNN_DC_DX_VB
#undef FASTNN_DC_DX_CALL
            }
        }
    }
}

/* ---- the two builds, picked once at run time ---------------------------------------------- */
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define FASTNN_DCONV_HAVE_AVX2_CLONE 1
__attribute__((target("avx2,fma"))) static void fastnn_dconv_fwd_avx2(
        const fastnn_dconv_geom *g, float *y, const float *x, const float *w, const float *b,
        long k0, int kb) {
    fastnn_dconv_fwd_body(1, g, y, x, w, b, k0, kb);
}
__attribute__((target("avx2,fma"))) static void fastnn_dconv_dw_avx2(
        const fastnn_dconv_geom *g, float *dw, const float *dy, const float *x, long k0, int kb,
        long t0, int tb, long n0, long n1, int accumulate) {
    fastnn_dconv_dw_body(1, g, dw, dy, x, k0, kb, t0, tb, n0, n1, accumulate);
}
__attribute__((target("avx2,fma"))) static void fastnn_dconv_dx_avx2(
        const fastnn_dconv_geom *g, float *dxc, const float *dyn, const float *w, long c) {
    fastnn_dconv_dx_body(1, g, dxc, dyn, w, c);
}
#endif

static void fastnn_dconv_dx_base(const fastnn_dconv_geom *g, float *dxc, const float *dyn,
                                 const float *w, long c) {
    fastnn_dconv_dx_body(0, g, dxc, dyn, w, c);
}

static void fastnn_dconv_fwd_base(const fastnn_dconv_geom *g, float *y, const float *x,
                                  const float *w, const float *b, long k0, int kb) {
    fastnn_dconv_fwd_body(0, g, y, x, w, b, k0, kb);
}

static void fastnn_dconv_dw_base(const fastnn_dconv_geom *g, float *dw, const float *dy,
                                 const float *x, long k0, int kb, long t0, int tb, long n0,
                                 long n1, int accumulate) {
    fastnn_dconv_dw_body(0, g, dw, dy, x, k0, kb, t0, tb, n0, n1, accumulate);
}

static int fastnn_dconv_avx2(void) {
#ifdef FASTNN_DCONV_HAVE_AVX2_CLONE
    return fastnn_cpu_avx2_fma();
#else
    return 0;
#endif
}

/* y[n] filters [k0, k0 + kb), kb <= FASTNN_DCONV_FWD_KB: x and y point at sample n. */
static void fastnn_dconv_forward(const fastnn_dconv_geom *g, float *y, const float *x,
                                 const float *w, const float *b, long k0, int kb) {
#ifdef FASTNN_DCONV_HAVE_AVX2_CLONE
    if (fastnn_dconv_avx2()) {
        fastnn_dconv_fwd_avx2(g, y, x, w, b, k0, kb);
        return;
    }
#endif
    fastnn_dconv_fwd_base(g, y, x, w, b, k0, kb);
}

/* dw block [k0, k0+kb) x [t0, t0+tb) over samples [n0, n1); dy, x point at sample 0. */
static void fastnn_dconv_dw(const fastnn_dconv_geom *g, float *dw, const float *dy, const float *x,
                            long k0, int kb, long t0, int tb, long n0, long n1, int accumulate) {
#ifdef FASTNN_DCONV_HAVE_AVX2_CLONE
    if (fastnn_dconv_avx2()) {
        fastnn_dconv_dw_avx2(g, dw, dy, x, k0, kb, t0, tb, n0, n1, accumulate);
        return;
    }
#endif
    fastnn_dconv_dw_base(g, dw, dy, x, k0, kb, t0, tb, n0, n1, accumulate);
}

/* dx plane c of sample n (dxc points at it, dyn at dy[n]), overwritten. */
static void fastnn_dconv_dx(const fastnn_dconv_geom *g, float *dxc, const float *dyn, const float *w,
                            long c) {
#ifdef FASTNN_DCONV_HAVE_AVX2_CLONE
    if (fastnn_dconv_avx2()) {
        fastnn_dconv_dx_avx2(g, dxc, dyn, w, c);
        return;
    }
#endif
    fastnn_dconv_dx_base(g, dxc, dyn, w, c);
}

#endif
