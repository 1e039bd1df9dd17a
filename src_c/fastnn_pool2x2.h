/* Max-pool 2x2 stride 2, one output row, float32, 8 outputs per vector step.
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

typedef float fastnn_pf8 __attribute__((vector_size(32)));
typedef int32_t fastnn_pi8 __attribute__((vector_size(32)));
typedef int64_t fastnn_pl8 __attribute__((vector_size(64)));

static inline __attribute__((always_inline)) fastnn_pf8 fastnn_pool_load8(const float *p) {
    fastnn_pf8 v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Lanes where `second` should replace `first` in the scan: second > first, or second is NaN. */
static inline __attribute__((always_inline)) fastnn_pi8 fastnn_pool_takes(fastnn_pf8 first, fastnn_pf8 second) {
    return (fastnn_pi8)((second > first) | (second != second));
}

static inline __attribute__((always_inline)) fastnn_pf8 fastnn_pool_pick(fastnn_pi8 take, fastnn_pf8 second,
                                                                        fastnn_pf8 first) {
    return (fastnn_pf8)(((fastnn_pi8)second & take) | ((fastnn_pi8)first & ~take));
}

static inline __attribute__((always_inline)) void fastnn_maxpool2x2_row_body(
        float *y, int64_t *argmax, const float *x, long W, long Q, int64_t offset) {
    const fastnn_pi8 even = {0, 2, 4, 6, 8, 10, 12, 14}, odd = {1, 3, 5, 7, 9, 11, 13, 15};
    const fastnn_pi8 lane2 = {0, 2, 4, 6, 8, 10, 12, 14};
    long q = 0;
    for (; q + 8 <= Q; q += 8) {
        fastnn_pf8 r0lo = fastnn_pool_load8(x + 2 * q), r0hi = fastnn_pool_load8(x + 2 * q + 8);
        fastnn_pf8 r1lo = fastnn_pool_load8(x + W + 2 * q), r1hi = fastnn_pool_load8(x + W + 2 * q + 8);
        fastnn_pf8 a = __builtin_shuffle(r0lo, r0hi, even), b = __builtin_shuffle(r0lo, r0hi, odd);
        fastnn_pf8 c = __builtin_shuffle(r1lo, r1hi, even), d = __builtin_shuffle(r1lo, r1hi, odd);
        fastnn_pi8 base = lane2 + (int32_t)(2 * q);       /* column of a in each lane */
        fastnn_pi8 take = fastnn_pool_takes(a, b);
        fastnn_pf8 top = fastnn_pool_pick(take, b, a);
        fastnn_pi8 top_at = base - take;                     /* take is -1 where b wins */
        take = fastnn_pool_takes(c, d);
        fastnn_pf8 bottom = fastnn_pool_pick(take, d, c);
        fastnn_pi8 bottom_at = base - take + (int32_t)W;
        take = fastnn_pool_takes(top, bottom);
        fastnn_pf8 best = fastnn_pool_pick(take, bottom, top);
        fastnn_pi8 best_at = (bottom_at & take) | (top_at & ~take);
        fastnn_pl8 wide = __builtin_convertvector(best_at, fastnn_pl8) + offset;
        memcpy(y + q, &best, sizeof best);
        memcpy(argmax + q, &wide, sizeof wide);
    }
    for (; q < Q; q++) {  /* the same tree, one output at a time */
        long top = 2 * q + ((x[2 * q + 1] > x[2 * q]) | (x[2 * q + 1] != x[2 * q + 1]));
        long bottom = W + 2 * q + ((x[W + 2 * q + 1] > x[W + 2 * q]) | (x[W + 2 * q + 1] != x[W + 2 * q + 1]));
        long best = ((x[bottom] > x[top]) | (x[bottom] != x[bottom])) ? bottom : top;
        y[q] = x[best];
        argmax[q] = offset + best;
    }
}

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
__attribute__((target("avx2"))) static void fastnn_maxpool2x2_row_avx2(
        float *y, int64_t *argmax, const float *x, long W, long Q, int64_t offset) {
    fastnn_maxpool2x2_row_body(y, argmax, x, W, Q, offset);
}
#define FASTNN_POOL_HAVE_AVX2 1
#endif

static void fastnn_maxpool2x2_row_base(float *y, int64_t *argmax, const float *x, long W, long Q,
                                       int64_t offset) {
    fastnn_maxpool2x2_row_body(y, argmax, x, W, Q, offset);
}

/* y (Q,), argmax (Q,) from input rows x (row 2p) and x + W (row 2p+1); offset = 2p*W. */
static inline void fastnn_maxpool2x2_row(float *y, int64_t *argmax, const float *x, long W, long Q,
                                         int64_t offset) {
#ifdef FASTNN_POOL_HAVE_AVX2
    static int avx2 = -1;
    if (avx2 < 0) {
        __builtin_cpu_init();
        avx2 = __builtin_cpu_supports("avx2");
    }
    if (avx2) {
        fastnn_maxpool2x2_row_avx2(y, argmax, x, W, Q, offset);
        return;
    }
#endif
    fastnn_maxpool2x2_row_base(y, argmax, x, W, Q, offset);
}

#endif
