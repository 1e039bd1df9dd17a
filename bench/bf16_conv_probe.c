/* Does a bfloat16 direct convolution pay on this CPU? LeNet's conv2 at batch 64, x (64, 20, 12,
 * 12), w (50, 20, 5, 5), y and dy (64, 50, 8, 8), stride 1, no padding: its forward, dW and dX,
 * each two ways:
 *
 *   f32:  fastnn's float32 kernels (src_c/fastnn_direct_conv_lanes.h), vectors of 8 lanes;
 *   bf16: the same loop nests on AVX512-BF16's vdpbf16ps (_mm512_dpbf16_ps: 32 bfloat16
 *         products summed pairwise into 16 float32 lanes), sums in float32, on inputs converted
 *         to bfloat16 first (round to nearest even, _mm512_cvtne2ps_pbh) by separate kernels
 *         whose cost the probe times apart.
 *
 * vdpbf16ps adds two products into each float32 lane, so both must belong to the same sum: each
 * bf16 kernel pairs two elements of its reduction, interleaved in memory by its conversion, and
 * lays its operands out so that a 16-lane operand is one contiguous 64-byte load.
 *
 * Built by bench/bf16_probe.py as a shared library (gcc at run time, no -march: each kernel
 * carries its own target attribute; probe_supported says, from __builtin_cpu_supports, which
 * of them may run) and called through ctypes; probe_best_seconds times them.
 *
 * Forward, y = conv(x, w) + b.
 * f32: 4 filters x 3 output vectors = 12 accumulators (fastnn's AVX2 tile); per tap (c, r, s)
 * load 3 input vectors, broadcast 4 weights. Q = 8, so a vector is one output row.
 * bf16: the pair is two input channels (c, c+1) at the same tap (C = 20 is even). A lane is an
 * output position: 16 lanes = output rows (p, p+1) x 8 columns, 16 consecutive floats of y, one
 * 64-byte store. The input of those lanes at tap (r, s) is the window x[c..c+1][p+r .. p+r+1]
 * [s .. s+7]; bf16_x lays x out as xb[n][c/2][s][h][q][c%2] (each row's 8-wide window at shift s,
 * both channels interleaved), so that window is one load. That repeats every input row S = 5
 * times (1.2 MB of bfloat16 for the 0.74 MB float32 batch), a cost the conversion's timing
 * includes. Weights: wb[k][c/2][r][s][c%2], one 32-bit broadcast per filter and tap. Lanes =
 * 16 filters with broadcast inputs would round K = 50 up to 64 and waste 22% of the products.
 * Tile: BF_KB filters x BF_VB row pairs; per tap pair BF_VB input loads and BF_KB broadcasts.
 * Zen 4 retires one 512-bit vdpbf16ps a cycle (bench/fma_peak.py: 64 flops a cycle) with a
 * latency of several cycles, so the tile wants >= 10 independent accumulators and well under one
 * load per dot product (Zen 4 splits a 512-bit load into two 256-bit halves).
 * Variants measured (kernel alone, 1 thread, best of 5, -DBF_KB=.. -DBF_VB=..; loads are
 * vector loads + broadcasts per tap pair; the float32 kernel: 102-107 GFLOP/s, the bf16 dot
 * peak: 229):
 *   5 x 4  (20 acc, 4 + 5 loads per 20 dots):  220-229 GFLOP/s  <- kept: one tile = one sample's
 *                                                                 8 rows, 50 = 10 x 5 filters
 *   10 x 2 (20 acc, 2 + 10 per 20):            212
 *   5 x 2  (10 acc, 2 + 5 per 10):             211
 *   2 x 4  (8 acc, 4 + 2 per 8):               194
 *   25 x 1 (25 acc, 1 + 25 per 25):            188
 *   10 x 1 (10 acc, 1 + 10 per 10):            175
 *
 * dW[k, c, r, s] = sum over (n, p, q) of dy[n, k, p, q] * x[n, c, p+r, q+s].
 * f32: fastnn_dconv_dw_tile where the build has 32 vector registers: 5 filters x 5 taps (s = 0..4
 * of one (c, r)) = 25 accumulators of 8 lanes along q; per (n, p) load 5 dy rows and 5 x
 * windows; summed over samples in chunks of 16 (fastnn's L2-sized chunks: 64 = 4 x 16), each
 * accumulator reduced across its lanes once per chunk. 256-bit vectors, compiled with AVX-512VL
 * only for its 32 registers (fastnn's AVX2 clone in a -march=native build on this CPU).
 * bf16: the pair is two samples (n, n+1); 16 lanes = rows (p, p+1) x 8 columns. bf16_dw_dy lays
 * dy out as [n/2][k][p][q][n%2] (a filter's row pair of both samples: one load), bf16_dw_x lays x
 * out as [n/2][c][s][h][q][n%2] (the forward's windows, with samples instead of channels
 * paired: rows p+r, p+r+1 at shift s are one load). Same 5 x 5 tile, 31 of the 32 registers.
 * Samples per chunk (-DDW_CHUNK=.., both precisions; 1 thread, best of 7, GFLOP/s f32 / bf16):
 * 16: 90 / 187 (kept: fastnn's), 32: 70 / 173, 64: 56 / 120 (the chunk's x falls out of L2).
 *
 * dX[n, c, h, w] = sum over (k, r, s) of w[k, c, r, s] * dy[n, k, h-r, w-s].
 * f32: fastnn_dconv_dx_tile where the build has 32 registers: the scatter form, 5 taps (s) x 4
 * dy rows = 20 accumulators for one (n, c, r), summed over k; the finished tile is shifted into
 * two vectors per row in registers (the shuffle-add epilogue) and added into dx. The gather
 * form would need dy padded by 4 on every side: 144 instead of 64 positions per (k, c) tap,
 * 2.25x the products.
 * bf16: the same scatter, the pair is two filters (k, k+1); 16 lanes = dy rows (p, p+1) x 8
 * columns, so the 4 row pairs of a sample are 4 accumulators per tap. bf16_dx_dy lays dy out as
 * [n][k/2][p][q][k%2] (one load per row pair), bf16_dx_w lays w out as [c][r][s][k] (a filter
 * pair's weights: one 32-bit broadcast; no flip: the scatter form reads w as the forward does).
 * Epilogue: a permute per (tap, row) moves lanes to their dx columns. It is not what holds bf16
 * dX at ~150-170 GFLOP/s: valignd instead of vpermps measured 151 against 147, and no epilogue
 * at all (wrong sums) 155, in the same session; per tile the body is only K/2 = 25 steps.
 */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

enum { N = 64, C = 20, H = 12, W = 12, K = 50, R = 5, S = 5, P = H - R + 1, Q = W - S + 1,
       CRS = C * R * S, RS = R * S, HW = H * W, PQ = P * Q, CP = C / 2, KP = K / 2, NP = N / 2 };

/* The arrays probe_run's `buf` holds, in this order (float32 ones, then bfloat16 ones). */
enum { B_Y, B_X, B_W, B_B, B_DY, B_DW, B_DX,  /* float32 */
       B_XB, B_WB, B_DW_XB, B_DW_DYB, B_DX_DYB, B_DX_WB, B_COUNT };  /* bfloat16 */

/* Which kernel probe_run / probe_best_seconds runs. */
enum { RUN_F32, RUN_BF16, RUN_BF16_X, RUN_BF16_W,
       RUN_DW_F32, RUN_DW_BF16, RUN_DW_BF16_X, RUN_DW_BF16_DY,
       RUN_DX_F32, RUN_DX_BF16, RUN_DX_BF16_DY, RUN_DX_BF16_W };

/* Keeps v in a register: without it gcc folds the tile's input loads into every FMA that uses
 * them (load-bound; the same guard as fastnn's FASTNN_DC_IN_REGISTER). */
#define IN_REGISTER(v) __asm__("" : "+v"(v))

/* ---- float32: fastnn's tiles, 8 lanes ------------------------------------------------------- */

#define F32_KB 4
#define F32_VB 3

/* y rows k0..k0+kb, output rows p0..p0+vb of one sample, from that sample's x (C, H, W). */
__attribute__((target("avx2,fma"), always_inline)) static inline void f32_tile(
        const int kb, const int vb, float *y, const float *x, const float *w, const float *b,
        int k0, int p0) {
    __m256 acc[F32_KB][F32_VB];
    const float *wk[F32_KB];
    int i, j;
    _Pragma("GCC unroll 4")
    for (i = 0; i < kb; i++) {
        wk[i] = w + (k0 + i) * CRS;
        _Pragma("GCC unroll 4")
        for (j = 0; j < vb; j++)
            acc[i][j] = _mm256_broadcast_ss(b + k0 + i);
    }
    int t = 0;
    for (int c = 0; c < C; c++) {
        for (int r = 0; r < R; r++) {
            const float *xr = x + (c * H + p0 + r) * W;
            for (int s = 0; s < S; s++, t++) {
                __m256 xv[F32_VB];
                _Pragma("GCC unroll 4")
                for (j = 0; j < vb; j++) {
                    xv[j] = _mm256_loadu_ps(xr + j * W + s);
                    IN_REGISTER(xv[j]);
                }
                _Pragma("GCC unroll 4")
                for (i = 0; i < kb; i++) {
                    __m256 wv = _mm256_broadcast_ss(wk[i] + t);
                    _Pragma("GCC unroll 4")
                    for (j = 0; j < vb; j++)
                        acc[i][j] = _mm256_fmadd_ps(wv, xv[j], acc[i][j]);
                }
            }
        }
    }
    _Pragma("GCC unroll 4")
    for (i = 0; i < kb; i++)
        _Pragma("GCC unroll 4")
        for (j = 0; j < vb; j++)
            _mm256_storeu_ps(y + ((k0 + i) * P + p0 + j) * Q, acc[i][j]);
}

/* The whole batch, in fastnn's order: per sample, per block of F32_KB filters, the rows in
 * tiles of F32_VB (8 rows: 3 + 3 + 2; 50 filters: 12 x 4 + 2). */
__attribute__((target("avx2,fma"))) static void conv_f32(float *y, const float *x, const float *w,
                                                        const float *b) {
    for (int n = 0; n < N; n++) {
        const float *xn = x + n * C * HW;
        float *yn = y + n * K * PQ;
        for (int k0 = 0; k0 < K; k0 += F32_KB) {
#define F32_ROW(KB)                                                          \
            for (p0 = 0; p0 + F32_VB <= P; p0 += F32_VB)                     \
                f32_tile(KB, F32_VB, yn, xn, w, b, k0, p0);                  \
            if (P - p0 == 2) f32_tile(KB, 2, yn, xn, w, b, k0, p0);          \
            else if (P - p0 == 1) f32_tile(KB, 1, yn, xn, w, b, k0, p0);
            int p0;
            switch (K - k0 < F32_KB ? K - k0 : F32_KB) {
            case 4: F32_ROW(4) break;
            case 3: F32_ROW(3) break;
            case 2: F32_ROW(2) break;
            default: F32_ROW(1) break;
            }
#undef F32_ROW
        }
    }
}

/* dW and dX: fastnn's 32-register tiles, which its AVX2 clone gets in a build with AVX-512 flags */
#define F32_32REG_TARGET __attribute__((target("avx512f,avx512vl,avx2,fma")))
#define DW_KB 5  /* filters and taps (s = 0..4 of one (c, r)) of a dW tile, both precisions */
#define DW_TB 5
#ifndef DW_CHUNK  /* -D overrides: samples per chunk (fastnn: 64 in chunks of 16) */
#define DW_CHUNK 16
#endif
_Static_assert(K % DW_KB == 0 && DW_TB == S && N % DW_CHUNK == 0 && DW_CHUNK % 2 == 0,
               "the dW tiles have no tails");

typedef float v8sf __attribute__((vector_size(32)));
typedef int v8si __attribute__((vector_size(32)));

/* Sum of the 8 lanes in fastnn_dc_hsum's order. */
F32_32REG_TARGET static inline float hsum8(__m256 a) {
    const v8sf h = (v8sf)a;
    return ((h[0] + h[4]) + (h[1] + h[5])) + ((h[2] + h[6]) + (h[3] + h[7]));
}

/* dw[k0..k0+5][c][r][0..5] (+)= sum over samples n0..n1 and all rows of dy * window. */
F32_32REG_TARGET __attribute__((always_inline)) static inline void f32_dw_tile(
        float *dw, const float *dy, const float *x, int k0, int c, int r, int n0, int n1,
        int accumulate) {
    __m256 acc[DW_KB][DW_TB];
    int i, j;
    _Pragma("GCC unroll 8")
    for (i = 0; i < DW_KB; i++)
        _Pragma("GCC unroll 8")
        for (j = 0; j < DW_TB; j++)
            acc[i][j] = _mm256_setzero_ps();
    for (int p = 0; p < P; p++) {
        const float *dyv = dy + (n0 * K + k0) * PQ + p * Q;
        const float *xv0 = x + (n0 * C + c) * HW + (p + r) * W;
        /* samples innermost, as fastnn: a regular stride and a whole chunk's trip count */
        for (int n = n0; n < n1; n++, dyv += K * PQ, xv0 += C * HW) {
            __m256 dv[DW_KB];
            _Pragma("GCC unroll 8")
            for (i = 0; i < DW_KB; i++) {
                dv[i] = _mm256_loadu_ps(dyv + i * PQ);
                IN_REGISTER(dv[i]);
            }
            _Pragma("GCC unroll 8")
            for (j = 0; j < DW_TB; j++) {
                __m256 xv = _mm256_loadu_ps(xv0 + j);
                IN_REGISTER(xv);
                _Pragma("GCC unroll 8")
                for (i = 0; i < DW_KB; i++)
                    acc[i][j] = _mm256_fmadd_ps(dv[i], xv, acc[i][j]);
            }
        }
    }
    _Pragma("GCC unroll 8")
    for (i = 0; i < DW_KB; i++)
        _Pragma("GCC unroll 8")
        for (j = 0; j < DW_TB; j++) {
            float *out = dw + (k0 + i) * CRS + (c * R + r) * S + j;
            *out = accumulate ? *out + hsum8(acc[i][j]) : hsum8(acc[i][j]);
        }
}

/* fastnn's _dw_direct on one thread: per chunk of samples, every tile (filter blocks outer). */
F32_32REG_TARGET static void dw_f32(float *dw, const float *dy, const float *x) {
    for (int n0 = 0; n0 < N; n0 += DW_CHUNK)
        for (int k0 = 0; k0 < K; k0 += DW_KB)
            for (int cr = 0; cr < C * R; cr++)
                f32_dw_tile(dw, dy, x, k0, cr / R, cr % R, n0, n0 + DW_CHUNK, n0 > 0);
}

#define DX_SB 5  /* taps (s) x dy rows (of 8 lanes) or row pairs (16) of a dX tile */
#define DX_VB 4
_Static_assert(DX_SB == S && P % DX_VB == 0 && P / 2 == DX_VB, "the dX tiles have no tails");

/* dx plane c of one sample (H, W) += its share from tap row r and dy rows p0..p0+4:
 * dx[c, p+r, q+s] += sum over k of w[k, c, r, s] * dy[k, p, q]. */
F32_32REG_TARGET __attribute__((always_inline)) static inline void f32_dx_tile(
        float *dxc, const float *dyn, const float *w, int c, int r, int p0) {
    const v8si lane = {0, 1, 2, 3, 4, 5, 6, 7};
    const v8sf zero = {0};
    __m256 acc[DX_SB][DX_VB];
    int i, j;
    _Pragma("GCC unroll 8")
    for (i = 0; i < DX_SB; i++)
        _Pragma("GCC unroll 8")
        for (j = 0; j < DX_VB; j++)
            acc[i][j] = _mm256_setzero_ps();
    const float *wk = w + (c * R + r) * S;
    const float *dyk = dyn + p0 * Q;
    for (int k = 0; k < K; k++, wk += CRS, dyk += PQ) {
        __m256 dv[DX_VB];
        _Pragma("GCC unroll 8")
        for (j = 0; j < DX_VB; j++) {
            dv[j] = _mm256_loadu_ps(dyk + j * Q);
            IN_REGISTER(dv[j]);
        }
        _Pragma("GCC unroll 8")
        for (i = 0; i < DX_SB; i++) {
            __m256 wv = _mm256_broadcast_ss(wk + i);
            _Pragma("GCC unroll 8")
            for (j = 0; j < DX_VB; j++)
                acc[i][j] = _mm256_fmadd_ps(wv, dv[j], acc[i][j]);
        }
    }
    /* fastnn's epilogue: acc[i][j] belongs at columns +i; shift it into a 16-lane window
       (lo, hi) of the row in registers, add that into dx once (one add per tile and row avoids
       store-forwarding stalls). Lane l of lo takes l - i (l >= i), of hi 8 - i + l (l < i);
       index 8 picks a zero. */
    _Pragma("GCC unroll 8")
    for (j = 0; j < DX_VB; j++) {
        v8sf lo = (v8sf)acc[0][j], hi = zero;
        _Pragma("GCC unroll 8")
        for (i = 1; i < DX_SB; i++) {
            const v8si from_acc = lane >= i;
            const v8si to_lo = ((lane - i) & from_acc) | (8 & ~from_acc);
            const v8si to_hi = ((lane + (8 - i)) & ~from_acc) | (8 & from_acc);
            lo += __builtin_shuffle((v8sf)acc[i][j], zero, to_lo);
            hi += __builtin_shuffle((v8sf)acc[i][j], zero, to_hi);
        }
        float *out = dxc + (p0 + j + r) * W;
        _mm256_storeu_ps(out, _mm256_add_ps(_mm256_loadu_ps(out), (__m256)lo));
        _Pragma("GCC unroll 8")
        for (i = 0; i + 1 < DX_SB; i++)
            out[8 + i] += hi[i];
    }
}

/* fastnn's _dx_direct on one thread: per (n, c) plane, zeroed, then every tap row r. */
F32_32REG_TARGET static void dx_f32(float *dx, const float *dy, const float *w) {
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            float *dxc = dx + (n * C + c) * HW;
            memset(dxc, 0, HW * sizeof(float));
            for (int r = 0; r < R; r++)
                for (int p0 = 0; p0 < P; p0 += DX_VB)
                    f32_dx_tile(dxc, dy + n * K * PQ, w, c, r, p0);
        }
}

/* ---- bfloat16 products, float32 sums: AVX512-BF16 ------------------------------------------- */
#if __GNUC__ >= 10  /* the first gcc with AVX512-BF16 intrinsics */
#define HAVE_BF16 1
#define BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512bf16")))

#ifndef BF_KB  /* -D overrides: how the variants in the header comment were measured */
#define BF_KB 5
#endif
#ifndef BF_VB
#define BF_VB 4
#endif
_Static_assert(K % BF_KB == 0 && (P / 2) % BF_VB == 0, "the bf16 tile has no tails");

/* 16 float32 lanes from the low 8 of a and of b: a0 b0 a1 b1 ... a7 b7 (a pair, interleaved). */
BF16_TARGET static inline __m512 interleave_lo(__m512 a, __m512 b) {
    const __m512i idx = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    return _mm512_permutex2var_ps(a, idx, b);
}

/* The same from the high 8: a8 b8 ... a15 b15. */
BF16_TARGET static inline __m512 interleave_hi(__m512 a, __m512 b) {
    const __m512i idx = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
    return _mm512_permutex2var_ps(a, idx, b);
}

/* Two (H, W) planes a, b -> xb[s][h][q][pair] bfloat16: row h's 8-wide window at shift s, a's
 * and b's interleaved (16 lanes). Two rows per conversion instruction. */
BF16_TARGET static void bf16_windows(uint16_t *xb, const float *a, const float *b) {
    for (int s = 0; s < S; s++)
        for (int h = 0; h < H; h += 2, xb += 32) {
            __m512 lo = interleave_lo(_mm512_castps256_ps512(_mm256_loadu_ps(a + h * W + s)),
                                      _mm512_castps256_ps512(_mm256_loadu_ps(b + h * W + s)));
            __m512 hi = interleave_lo(_mm512_castps256_ps512(_mm256_loadu_ps(a + (h + 1) * W + s)),
                                      _mm512_castps256_ps512(_mm256_loadu_ps(b + (h + 1) * W + s)));
            _mm512_storeu_si512(xb, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));  /* lo -> low half */
        }
}

/* Two (P, Q) planes a, b -> out[p][q][pair] bfloat16, interleaved. */
BF16_TARGET static void bf16_pair_planes(uint16_t *out, const float *a, const float *b) {
    for (int i = 0; i < PQ; i += 16, out += 32) {
        __m512 va = _mm512_loadu_ps(a + i), vb = _mm512_loadu_ps(b + i);
        _mm512_storeu_si512(out, (__m512i)_mm512_cvtne2ps_pbh(interleave_hi(va, vb),
                                                              interleave_lo(va, vb)));
    }
}

/* x (N, C, H, W) float32 -> xb[n][c/2][s][h][q][c%2]: the forward's channel-paired windows. */
BF16_TARGET static void bf16_x(uint16_t *xb, const float *x) {
    for (int n = 0; n < N; n++)
        for (int cp = 0; cp < CP; cp++, xb += S * H * 16)
            bf16_windows(xb, x + (n * C + 2 * cp) * HW, x + (n * C + 2 * cp + 1) * HW);
}

/* w (K, C, R, S) float32 -> wb[k][c/2][r][s][c%2] bfloat16: per (k, c/2) the RS = 25 taps of
 * channels c and c + 1 interleaved, 16 taps per conversion (the last one masked). */
BF16_TARGET static void bf16_w(uint16_t *wb, const float *w) {
    for (int kc = 0; kc < K * CP; kc++, wb += 2 * RS) {
        const float *w0 = w + 2 * kc * RS, *w1 = w0 + RS;
        for (int t0 = 0; t0 < RS; t0 += 16) {
            __m512 half[2];
            for (int h = 0; h < 2; h++) {
                int t = t0 + 8 * h, left = RS - t < 0 ? 0 : RS - t;
                __mmask16 m = (__mmask16)((1u << (left < 8 ? left : 8)) - 1);
                half[h] = interleave_lo(_mm512_maskz_loadu_ps(m, w0 + t), _mm512_maskz_loadu_ps(m, w1 + t));
            }
            int pairs = RS - t0 < 16 ? RS - t0 : 16;
            __mmask32 m = (__mmask32)((1ull << 2 * pairs) - 1);
            _mm512_mask_storeu_epi16(wb + 2 * t0, m, (__m512i)_mm512_cvtne2ps_pbh(half[1], half[0]));
        }
    }
}

/* y filters k0..k0+BF_KB, all 8 output rows (BF_VB pairs from row 2 * j0) of one sample, from
 * its xb (CP, S, H, 16 lanes). */
BF16_TARGET __attribute__((always_inline)) static inline void bf16_tile(
        float *y, const uint16_t *xb, const uint16_t *wb, const float *b, int k0, int j0) {
    __m512 acc[BF_KB][BF_VB];
    const uint16_t *wk[BF_KB];
    int i, j;
    _Pragma("GCC unroll 32")
    for (i = 0; i < BF_KB; i++) {
        wk[i] = wb + (k0 + i) * CP * RS * 2;
        _Pragma("GCC unroll 4")
        for (j = 0; j < BF_VB; j++)
            acc[i][j] = _mm512_set1_ps(b[k0 + i]);
    }
    for (int cp = 0; cp < CP; cp++) {
        for (int r = 0; r < R; r++) {
            for (int s = 0; s < S; s++) {
                /* rows 2 (j0 + j) + r and the next, window s: 32 bfloat16, 16 lanes */
                const uint16_t *xs = xb + ((cp * S + s) * H + 2 * j0 + r) * 16;
                const int t = (cp * RS + r * S + s) * 2;
                __m512i xv[BF_VB];
                _Pragma("GCC unroll 4")
                for (j = 0; j < BF_VB; j++) {
                    xv[j] = _mm512_loadu_si512(xs + 32 * j);
                    IN_REGISTER(xv[j]);
                }
                _Pragma("GCC unroll 32")
                for (i = 0; i < BF_KB; i++) {
                    int32_t pair;  /* w[k][c][r][s], w[k][c+1][r][s] */
                    memcpy(&pair, wk[i] + t, sizeof pair);
                    const __m512bh wv = (__m512bh)_mm512_set1_epi32(pair);
                    _Pragma("GCC unroll 4")
                    for (j = 0; j < BF_VB; j++)
                        acc[i][j] = _mm512_dpbf16_ps(acc[i][j], (__m512bh)xv[j], wv);
                }
            }
        }
    }
    /* lanes = rows 2 (j0 + j), +1 of filter k0 + i: 16 consecutive floats of y */
    _Pragma("GCC unroll 32")
    for (i = 0; i < BF_KB; i++)
        _Pragma("GCC unroll 4")
        for (j = 0; j < BF_VB; j++)
            _mm512_storeu_ps(y + ((k0 + i) * P + 2 * (j0 + j)) * Q, acc[i][j]);
}

BF16_TARGET static void conv_bf16(float *y, const uint16_t *xb, const uint16_t *wb, const float *b) {
    for (int n = 0; n < N; n++) {
        const uint16_t *xn = xb + n * CP * S * H * 16;
        float *yn = y + n * K * PQ;
        for (int k0 = 0; k0 < K; k0 += BF_KB)
            for (int j0 = 0; j0 < P / 2; j0 += BF_VB)
                bf16_tile(yn, xn, wb, b, k0, j0);
    }
}

/* x -> [n/2][c][s][h][q][n%2]: the forward's windows with samples paired instead of channels. */
BF16_TARGET static void bf16_dw_x(uint16_t *xb, const float *x) {
    for (int np = 0; np < NP; np++)
        for (int c = 0; c < C; c++, xb += S * H * 16)
            bf16_windows(xb, x + (2 * np * C + c) * HW, x + ((2 * np + 1) * C + c) * HW);
}

/* dy -> [n/2][k][p][q][n%2]. */
BF16_TARGET static void bf16_dw_dy(uint16_t *dyb, const float *dy) {
    for (int np = 0; np < NP; np++)
        for (int k = 0; k < K; k++, dyb += 2 * PQ)
            bf16_pair_planes(dyb, dy + (2 * np * K + k) * PQ, dy + ((2 * np + 1) * K + k) * PQ);
}

/* dw[k0..k0+5][c][r][0..5] (+)= sum over sample pairs np0..np1 and all row pairs of dy * window:
 * f32_dw_tile with 16 lanes of two products each. */
BF16_TARGET __attribute__((always_inline)) static inline void bf16_dw_tile(
        float *dw, const uint16_t *dyb, const uint16_t *xb, int k0, int c, int r, int np0,
        int np1, int accumulate) {
    __m512 acc[DW_KB][DW_TB];
    int i, j;
    _Pragma("GCC unroll 8")
    for (i = 0; i < DW_KB; i++)
        _Pragma("GCC unroll 8")
        for (j = 0; j < DW_TB; j++)
            acc[i][j] = _mm512_setzero_ps();
    for (int p = 0; p < P; p += 2) {
        const uint16_t *dyv = dyb + ((np0 * K + k0) * P + p) * Q * 2;
        const uint16_t *xv0 = xb + ((np0 * C + c) * S * H + p + r) * 16;
        for (int np = np0; np < np1; np++, dyv += K * PQ * 2, xv0 += C * S * H * 16) {
            __m512i dv[DW_KB];
            _Pragma("GCC unroll 8")
            for (i = 0; i < DW_KB; i++) {
                dv[i] = _mm512_loadu_si512(dyv + i * PQ * 2);
                IN_REGISTER(dv[i]);
            }
            _Pragma("GCC unroll 8")
            for (j = 0; j < DW_TB; j++) {
                __m512i xv = _mm512_loadu_si512(xv0 + j * H * 16);  /* shift s = j */
                IN_REGISTER(xv);
                _Pragma("GCC unroll 8")
                for (i = 0; i < DW_KB; i++)
                    acc[i][j] = _mm512_dpbf16_ps(acc[i][j], (__m512bh)dv[i], (__m512bh)xv);
            }
        }
    }
    _Pragma("GCC unroll 8")
    for (i = 0; i < DW_KB; i++)
        _Pragma("GCC unroll 8")
        for (j = 0; j < DW_TB; j++) {
            float *out = dw + (k0 + i) * CRS + (c * R + r) * S + j;
            float sum = _mm512_reduce_add_ps(acc[i][j]);
            *out = accumulate ? *out + sum : sum;
        }
}

BF16_TARGET static void dw_bf16(float *dw, const uint16_t *dyb, const uint16_t *xb) {
    for (int np0 = 0; np0 < NP; np0 += DW_CHUNK / 2)
        for (int k0 = 0; k0 < K; k0 += DW_KB)
            for (int cr = 0; cr < C * R; cr++)
                bf16_dw_tile(dw, dyb, xb, k0, cr / R, cr % R, np0, np0 + DW_CHUNK / 2, np0 > 0);
}

/* dy -> [n][k/2][p][q][k%2]. */
BF16_TARGET static void bf16_dx_dy(uint16_t *dyb, const float *dy) {
    for (int nk = 0; nk < N * KP; nk++, dyb += 2 * PQ)
        bf16_pair_planes(dyb, dy + 2 * nk * PQ, dy + (2 * nk + 1) * PQ);
}

/* w (K, C, R, S) -> wb[c][r][s][k]: per tap, the 50 filters' weights (stride CRS in w: gathered,
 * 16 at a time, the last 16 masked to 2). */
BF16_TARGET static void bf16_dx_w(uint16_t *wb, const float *w) {
    const __m512i k16 = _mm512_mullo_epi32(
        _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), _mm512_set1_epi32(CRS));
    for (int t = 0; t < CRS; t++, wb += K) {
        for (int k0 = 0; k0 < K; k0 += 32) {
            __m512 v[2];
            for (int h = 0; h < 2; h++) {
                int left = K - k0 - 16 * h;
                __mmask16 m = left >= 16 ? 0xffff : left > 0 ? (__mmask16)((1u << left) - 1) : 0;
                v[h] = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, k16, w + (k0 + 16 * h) * CRS + t, 4);
            }
            int left = K - k0 < 32 ? K - k0 : 32;
            _mm512_mask_storeu_epi16(wb + k0, (__mmask32)((1ull << left) - 1),
                                     (__m512i)_mm512_cvtne2ps_pbh(v[1], v[0]));
        }
    }
}

/* f32_dx_tile with 16 lanes = dy rows (2j, 2j+1) of one sample and filter pairs: dx plane c
 * += its share from tap row r, all DX_VB row pairs. */
BF16_TARGET __attribute__((always_inline)) static inline void bf16_dx_tile(
        float *dxc, const uint16_t *dyb, const uint16_t *wb, int c, int r) {
    const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    __m512 acc[DX_SB][DX_VB];
    int i, j;
    _Pragma("GCC unroll 8")
    for (i = 0; i < DX_SB; i++)
        _Pragma("GCC unroll 8")
        for (j = 0; j < DX_VB; j++)
            acc[i][j] = _mm512_setzero_ps();
    const uint16_t *wt = wb + (c * R + r) * S * K;
    for (int kp = 0; kp < KP; kp++, dyb += 2 * PQ) {
        __m512i dv[DX_VB];
        _Pragma("GCC unroll 8")
        for (j = 0; j < DX_VB; j++) {
            dv[j] = _mm512_loadu_si512(dyb + 32 * j);
            IN_REGISTER(dv[j]);
        }
        _Pragma("GCC unroll 8")
        for (i = 0; i < DX_SB; i++) {
            int32_t pair;  /* w[k][c][r][s], w[k+1][c][r][s] */
            memcpy(&pair, wt + i * K + 2 * kp, sizeof pair);
            const __m512bh wv = (__m512bh)_mm512_set1_epi32(pair);
            _Pragma("GCC unroll 8")
            for (j = 0; j < DX_VB; j++)
                acc[i][j] = _mm512_dpbf16_ps(acc[i][j], (__m512bh)dv[j], wv);
        }
    }
    /* acc[i][j]'s lanes 0-7 belong at dx row 2j + r, columns i..i+7, lanes 8-15 at the next row:
       each row's 12 columns gather, per tap, lanes w - i (+8) into a zero-masked permute */
    _Pragma("GCC unroll 8")
    for (j = 0; j < DX_VB; j++) {
        __m512 row0 = _mm512_setzero_ps(), row1 = _mm512_setzero_ps();
        _Pragma("GCC unroll 8")
        for (i = 0; i < DX_SB; i++) {
            const __mmask16 cols = (__mmask16)(0xff << i);
            const __m512i from = _mm512_sub_epi32(lane, _mm512_set1_epi32(i));
            row0 = _mm512_add_ps(row0, _mm512_maskz_permutexvar_ps(cols, from, acc[i][j]));
            row1 = _mm512_add_ps(row1, _mm512_maskz_permutexvar_ps(
                cols, _mm512_add_epi32(from, _mm512_set1_epi32(8)), acc[i][j]));
        }
        float *out = dxc + (2 * j + r) * W;
        const __mmask16 w12 = (1u << W) - 1;
        _mm512_mask_storeu_ps(out, w12, _mm512_add_ps(_mm512_maskz_loadu_ps(w12, out), row0));
        _mm512_mask_storeu_ps(out + W, w12, _mm512_add_ps(_mm512_maskz_loadu_ps(w12, out + W), row1));
    }
}

BF16_TARGET static void dx_bf16(float *dx, const uint16_t *dyb, const uint16_t *wb) {
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            float *dxc = dx + (n * C + c) * HW;
            memset(dxc, 0, HW * sizeof(float));
            for (int r = 0; r < R; r++)
                bf16_dx_tile(dxc, dyb + n * K * PQ, wb, c, r);
        }
}
#endif

/* ---- the interface bench/bf16_probe.py calls (ctypes) --------------------------------------- */

/* Elements of buffer `which` (B_*): float32 ones are the tensors' sizes, bfloat16 ones what the
 * conversions fill. */
long probe_elements(int which) {
    switch (which) {
    case B_Y: case B_DY: return (long)N * K * PQ;
    case B_X: case B_DX: return (long)N * C * HW;
    case B_W: case B_DW: return (long)K * CRS;
    case B_B: return K;
    case B_XB: case B_DW_XB: return (long)N * C * S * H * 8;
    case B_WB: case B_DX_WB: return (long)K * CRS;
    case B_DW_DYB: case B_DX_DYB: return (long)N * K * PQ;
    default: return 0;
    }
}

/* 1 if kernel `which` (RUN_*) is compiled in and the CPU has its instructions. */
int probe_supported(int which) {
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    int avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl");
    if (which == RUN_F32)
        return avx2;
    if (which == RUN_DW_F32 || which == RUN_DX_F32)
        return avx512;
#ifdef HAVE_BF16
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512bf16");
#else
    return 0;
#endif
}

/* One run of kernel `which` on the whole batch (call only where probe_supported(which)), on the
 * arrays buf[B_*]: RUN_F32 y = conv(x, w) + b, RUN_DW_F32 dw, RUN_DX_F32 dx; RUN_BF16, RUN_DW_BF16,
 * RUN_DX_BF16 the same from the bfloat16 arrays that the other RUN_*_BF16_* conversions fill. */
void probe_run(int which, void *const *buf) {
    float *y = buf[B_Y], *dw = buf[B_DW], *dx = buf[B_DX];
    const float *x = buf[B_X], *w = buf[B_W], *b = buf[B_B], *dy = buf[B_DY];
    switch (which) {
    case RUN_F32: conv_f32(y, x, w, b); break;
    case RUN_DW_F32: dw_f32(dw, dy, x); break;
    case RUN_DX_F32: dx_f32(dx, dy, w); break;
#ifdef HAVE_BF16
    case RUN_BF16: conv_bf16(y, buf[B_XB], buf[B_WB], b); break;
    case RUN_BF16_X: bf16_x(buf[B_XB], x); break;
    case RUN_BF16_W: bf16_w(buf[B_WB], w); break;
    case RUN_DW_BF16: dw_bf16(dw, buf[B_DW_DYB], buf[B_DW_XB]); break;
    case RUN_DW_BF16_X: bf16_dw_x(buf[B_DW_XB], x); break;
    case RUN_DW_BF16_DY: bf16_dw_dy(buf[B_DW_DYB], dy); break;
    case RUN_DX_BF16: dx_bf16(dx, buf[B_DX_DYB], buf[B_DX_WB]); break;
    case RUN_DX_BF16_DY: bf16_dx_dy(buf[B_DX_DYB], dy); break;
    case RUN_DX_BF16_W: bf16_dx_w(buf[B_DX_WB], w); break;
#endif
    }
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* Seconds per probe_run of `which`: the best of `repeats` timed runs of `calls` back-to-back
 * calls each, `calls` chosen so a timed run lasts >= `seconds` (the microsecond conversions
 * are timed over many calls, not one). Noise only ever makes a run slower. */
double probe_best_seconds(int which, int repeats, double seconds, void *const *buf) {
    long calls = 1;
    double start = now();
    probe_run(which, buf);  /* warm-up: caches, page faults, the clock */
    double once = now() - start;
    while (calls * once < seconds && calls < (1L << 30))
        calls *= 2;
    double best = 1e30;
    for (int rep = 0; rep < repeats; rep++) {
        start = now();
        for (long i = 0; i < calls; i++)
            probe_run(which, buf);
        double per_call = (now() - start) / calls;
        if (per_call < best)
            best = per_call;
    }
    return best;
}
