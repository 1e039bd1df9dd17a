/* Max-pool 2x2 stride 2, one output row, float32, 8 outputs per vector step (16 in the AVX-512
 * build, rows of >= 16 outputs).
 *
 * Semantics are the generic kernel's scan (src_c/pool.pyx): a, b of row 2p, then c, d of row
 * 2p+1; a value wins with strict > (ties keep the first) and a NaN always wins. As a tree:
 * top = max(a, b), bottom = max(c, d), best = max(top, bottom), each "max" taking its second
 * operand when it is greater or NaN. The scalar loop ran at ~7.7 ns per output; here even and
 * odd columns are split with shuffles and every choice is a lane-wise select.
 */
#ifndef FASTNN_POOL2X2_H
#define FASTNN_POOL2X2_H
#include <stdint.h>
#include <string.h>
#include "fastnn_cpu.h"

typedef float fastnn_pf8 __attribute__((vector_size(32)));
typedef int32_t fastnn_pi8 __attribute__((vector_size(32)));
typedef float fastnn_pf4 __attribute__((vector_size(16)));
typedef int32_t fastnn_pi4 __attribute__((vector_size(16)));
typedef int64_t fastnn_pl4 __attribute__((vector_size(32)));

/* The scan as a tree on vectors of any width (VF of floats, VI of int32 lanes): top = max(a, b),
 * bottom = max(c, d), best = max(top, bottom), each "max" taking its second operand where it is
 * greater or NaN (a lane-wise select); best_at = the winner's column, from base (a's column in
 * each lane) and the row stride W. */
#define FASTNN_POOL_TREE(VF, VI, a, b, c, d, base, W, best, best_at)                     \
    do {                                                                                  \
        VI take_ = (VI)((b > a) | (b != b));                                              \
        VF top_ = (VF)(((VI)b & take_) | ((VI)a & ~take_));                               \
        VI top_at_ = (base) - take_;                                                      \
        take_ = (VI)((d > c) | (d != d));                                                 \
        VF bottom_ = (VF)(((VI)d & take_) | ((VI)c & ~take_));                            \
        VI bottom_at_ = (base) - take_ + (int32_t)(W);                                    \
        take_ = (VI)((bottom_ > top_) | (bottom_ != bottom_));                            \
        best = (VF)(((VI)bottom_ & take_) | ((VI)top_ & ~take_));                         \
        best_at = (bottom_at_ & take_) | (top_at_ & ~take_);                              \
    } while (0)

/* Outputs q .. q+L-1 of the row as vectors of L lanes (VF, VI; even = {0, 2, ..., 2L-2}): the
 * two input rows' 2L values each, split into even and odd columns (a, b from row 2p, c, d from
 * row 2p+1), then FASTNN_POOL_TREE. */
#define FASTNN_POOL_VECTOR(VF, VI, even, x, W, q, best, best_at)                          \
    do {                                                                                  \
        VF r0lo_, r0hi_, r1lo_, r1hi_;                                                    \
        const long half_ = sizeof(VF) / sizeof(float);                                    \
        memcpy(&r0lo_, (x) + 2 * (q), sizeof r0lo_);                                      \
        memcpy(&r0hi_, (x) + 2 * (q) + half_, sizeof r0hi_);                              \
        memcpy(&r1lo_, (x) + (W) + 2 * (q), sizeof r1lo_);                                \
        memcpy(&r1hi_, (x) + (W) + 2 * (q) + half_, sizeof r1hi_);                        \
        VF a_ = __builtin_shuffle(r0lo_, r0hi_, even), b_ = __builtin_shuffle(r0lo_, r0hi_, (even) + 1); \
        VF c_ = __builtin_shuffle(r1lo_, r1hi_, even), d_ = __builtin_shuffle(r1lo_, r1hi_, (even) + 1); \
        VI base_ = (even) + (int32_t)(2 * (q));  /* column of a in each lane */           \
        FASTNN_POOL_TREE(VF, VI, a_, b_, c_, d_, base_, W, best, best_at);                \
    } while (0)

/* Outputs q .. q+7 of the row. */
static inline __attribute__((always_inline)) void fastnn_maxpool2x2_vec8(
        float *y, int64_t *argmax, const float *x, long W, long q, int64_t offset) {
    const fastnn_pi8 even = {0, 2, 4, 6, 8, 10, 12, 14};
    fastnn_pf8 best;
    fastnn_pi8 best_at;
    FASTNN_POOL_VECTOR(fastnn_pf8, fastnn_pi8, even, x, W, q, best, best_at);
    /* widen to int64 in two 4-lane halves: a 512-bit vector went through the stack */
    fastnn_pi4 lo = __builtin_shufflevector(best_at, best_at, 0, 1, 2, 3);
    fastnn_pi4 hi = __builtin_shufflevector(best_at, best_at, 4, 5, 6, 7);
    fastnn_pl4 wide_lo = __builtin_convertvector(lo, fastnn_pl4) + offset;
    fastnn_pl4 wide_hi = __builtin_convertvector(hi, fastnn_pl4) + offset;
    memcpy(y + q, &best, sizeof best);
    memcpy(argmax + q, &wide_lo, sizeof wide_lo);
    memcpy(argmax + q + 4, &wide_hi, sizeof wide_hi);
}

/* Outputs q .. q+3, the same tree 4 lanes wide (rows of 4-7 outputs, LeNet's second pool). */
static inline __attribute__((always_inline)) void fastnn_maxpool2x2_vec4(
        float *y, int64_t *argmax, const float *x, long W, long q, int64_t offset) {
    const fastnn_pi4 even = {0, 2, 4, 6};
    fastnn_pf4 best;
    fastnn_pi4 best_at;
    FASTNN_POOL_VECTOR(fastnn_pf4, fastnn_pi4, even, x, W, q, best, best_at);
    fastnn_pl4 wide = __builtin_convertvector(best_at, fastnn_pl4) + offset;
    memcpy(y + q, &best, sizeof best);
    memcpy(argmax + q, &wide, sizeof wide);
}

/* Output q by the same tree, one at a time (rows of fewer than 4 outputs). */
static inline __attribute__((always_inline)) void fastnn_maxpool2x2_one(
        float *y, int64_t *argmax, const float *x, long W, long q, int64_t offset) {
    long top = 2 * q + ((x[2 * q + 1] > x[2 * q]) | (x[2 * q + 1] != x[2 * q + 1]));
    long bottom = W + 2 * q + ((x[W + 2 * q + 1] > x[W + 2 * q]) | (x[W + 2 * q + 1] != x[W + 2 * q + 1]));
    long best = ((x[bottom] > x[top]) | (x[bottom] != x[bottom])) ? bottom : top;
    y[q] = x[best];
    argmax[q] = offset + best;
}

static inline __attribute__((always_inline)) void fastnn_maxpool2x2_row_body(
        float *y, int64_t *argmax, const float *x, long W, long Q, int64_t offset) {
    long q = 0;
    for (; q + 8 <= Q; q += 8)
        fastnn_maxpool2x2_vec8(y, argmax, x, W, q, offset);
    /* a tail: the last 8 (or 4) outputs again, overlapping; the overlap gets the same values */
    if (q < Q && Q >= 8) {
        fastnn_maxpool2x2_vec8(y, argmax, x, W, Q - 8, offset);
        return;
    }
    if (Q >= 4) {
        fastnn_maxpool2x2_vec4(y, argmax, x, W, 0, offset);
        if (Q > 4)
            fastnn_maxpool2x2_vec4(y, argmax, x, W, Q - 4, offset);
        return;
    }
    for (; q < Q; q++)
        fastnn_maxpool2x2_one(y, argmax, x, W, q, offset);
}

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
__attribute__((target("avx2"))) static void fastnn_maxpool2x2_row_avx2(
        float *y, int64_t *argmax, const float *x, long W, long Q, int64_t offset) {
    fastnn_maxpool2x2_row_body(y, argmax, x, W, Q, offset);
}
#define FASTNN_POOL_HAVE_AVX2 1
#endif

/* Whether rows of >= 16 outputs run the 16-lane AVX-512 row when FASTNN_ISA is unset (fastnn_cpu.h):
 * it measured faster than the AVX2 row on the development host (rows of 32: docs/kernels.md),
 * its shuffles doing twice the outputs each. LeNet's pooled rows (12 and 4 outputs) are
 * narrower than 16 lanes and stay on the 8- and 4-lane path. */
#define FASTNN_POOL_AVX512_BY_DEFAULT 1

#ifdef FASTNN_HAVE_X86_CLONES
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx2,fma")
typedef float fastnn_pf16 __attribute__((vector_size(64)));
typedef int32_t fastnn_pi16 __attribute__((vector_size(64)));

/* Outputs q .. q+15: fastnn_maxpool2x2_vec8's tree, 16 lanes wide. */
static inline __attribute__((always_inline)) void fastnn_maxpool2x2_vec16(
        float *y, int64_t *argmax, const float *x, long W, long q, int64_t offset) {
    const fastnn_pi16 even = {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30};
    fastnn_pf16 best;
    fastnn_pi16 best_at;
    FASTNN_POOL_VECTOR(fastnn_pf16, fastnn_pi16, even, x, W, q, best, best_at);
    memcpy(y + q, &best, sizeof best);
    for (int part = 0; part < 4; part++) {  /* widen to int64 four lanes at a time, as vec8 */
        fastnn_pi4 quarter = {best_at[4 * part], best_at[4 * part + 1], best_at[4 * part + 2],
                              best_at[4 * part + 3]};
        fastnn_pl4 wide = __builtin_convertvector(quarter, fastnn_pl4) + offset;
        memcpy(argmax + q + 4 * part, &wide, sizeof wide);
    }
}

/* Rows of >= 16 outputs by 16 lanes, the last vector overlapping (same values); narrower rows
 * take the 8- and 4-lane path. */
__attribute__((target("avx512f,avx512vl,avx2,fma"))) static void fastnn_maxpool2x2_row_avx512(
        float *y, int64_t *argmax, const float *x, long W, long Q, int64_t offset) {
    long q = 0;
    if (Q < 16) {
        fastnn_maxpool2x2_row_body(y, argmax, x, W, Q, offset);
        return;
    }
    for (; q + 16 <= Q; q += 16)
        fastnn_maxpool2x2_vec16(y, argmax, x, W, q, offset);
    if (q < Q)
        fastnn_maxpool2x2_vec16(y, argmax, x, W, Q - 16, offset);
}
#pragma GCC pop_options
#endif

/* The level a row of Q outputs runs at (FASTNN_ISA_*): for tests and fastnn.info(). */
static int fastnn_maxpool2x2_isa(long Q) {
#ifdef FASTNN_HAVE_X86_CLONES
    if (Q >= 16 && fastnn_isa_use_avx512(FASTNN_POOL_AVX512_BY_DEFAULT))
        return FASTNN_ISA_AVX512;
#endif
#ifdef FASTNN_POOL_HAVE_AVX2
    if (fastnn_isa() >= FASTNN_ISA_AVX2)
        return FASTNN_ISA_AVX2;
#endif
    return FASTNN_ISA_BASELINE;
}

static void fastnn_maxpool2x2_row_base(float *y, int64_t *argmax, const float *x, long W, long Q,
                                       int64_t offset) {
    fastnn_maxpool2x2_row_body(y, argmax, x, W, Q, offset);
}

/* y (Q,), argmax (Q,) from input rows x (row 2p) and x + W (row 2p+1); offset = 2p*W. */
static inline void fastnn_maxpool2x2_row(float *y, int64_t *argmax, const float *x, long W, long Q,
                                         int64_t offset) {
    switch (fastnn_maxpool2x2_isa(Q)) {
#ifdef FASTNN_HAVE_X86_CLONES
    case FASTNN_ISA_AVX512: fastnn_maxpool2x2_row_avx512(y, argmax, x, W, Q, offset); return;
#endif
#ifdef FASTNN_POOL_HAVE_AVX2
    case FASTNN_ISA_AVX2: fastnn_maxpool2x2_row_avx2(y, argmax, x, W, Q, offset); return;
#endif
    default: fastnn_maxpool2x2_row_base(y, argmax, x, W, Q, offset);
    }
}

#endif
