/* The training step of a tiny Dense stack (the spiral preset's 2-10-3 net at batch 30), with
 * the batch along the vector lanes: every activation is stored transposed, (features, batch),
 * so that each loop below runs over the batch, contiguous, in whole vectors.
 *
 * Why: in the row-major layout of the other kernels, a tiny layer's loops run over 2, 3 or 10
 * features: too short to vectorise, and each output is a short serial chain of adds. The batch
 * (30 here) is the one long dimension of such a net. Transposed, the forward is one broadcast
 * FMA per weight and vector of the batch, dW and db are dot products over the batch, and the
 * softmax and dX are vector passes; so are the activation and its slope, which the caller
 * applies with _elementwise.pxd's activate_row and slope_row over whole (outs, ld) arrays.
 * Results agree with the GEMM path to rounding, not to the bit.
 *
 * Layouts: xt and yt of a layer are (ins, ld) and (outs, ld): feature rows of the batch's n
 * values, padded to ld, a multiple of FASTNN_TINY_LANES, so that no loop has a scalar tail.
 * w is the layer's own (outs, ins) row-major array; gt (outs, ld) is a layer's d loss / dz.
 * Padding lanes of x and y hold any finite value; those of every gt are 0 (the loss writes them
 * so; the slope and dX keep them), so they add nothing to dW and db.
 */
#ifndef FASTNN_TINY_DENSE_H
#define FASTNN_TINY_DENSE_H
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "fastnn_expf.h"

/* The padding unit: one AVX-512 vector (two AVX2 ones, four SSE ones on other builds). */
#define FASTNN_TINY_LANES 16
typedef float fastnn_tiny_v __attribute__((vector_size(4 * FASTNN_TINY_LANES)));

static inline fastnn_tiny_v fastnn_tiny_load(const float *p) {
    fastnn_tiny_v v;
    memcpy(&v, p, sizeof v);  /* unaligned load */
    return v;
}

static inline void fastnn_tiny_store(float *p, fastnn_tiny_v v) {
    memcpy(p, &v, sizeof v);
}

static inline float fastnn_tiny_hsum(fastnn_tiny_v v) {
    float h[8];
    for (int l = 0; l < 8; l++)
        h[l] = v[l] + v[l + 8];
    return ((h[0] + h[4]) + (h[1] + h[5])) + ((h[2] + h[6]) + (h[3] + h[7]));
}

/* The padded row length for a batch of n. */
static inline ptrdiff_t fastnn_tiny_ld(ptrdiff_t n) {
    return (n + FASTNN_TINY_LANES - 1) / FASTNN_TINY_LANES * FASTNN_TINY_LANES;
}

/* xt (ins, ld) = x (n, ins) transposed (padding lanes left as they are) */
static inline void fastnn_tiny_transpose_in(float *restrict xt, const float *restrict x,
                                            ptrdiff_t n, ptrdiff_t ld, ptrdiff_t ins) {
    for (ptrdiff_t r = 0; r < n; r++)
        for (ptrdiff_t i = 0; i < ins; i++)
            xt[i * ld + r] = x[r * ins + i];
}

/* yt (outs, ld) = w (outs, ins) @ xt (ins, ld) + b: the sum over the inputs first, in order,
 * then the bias, as the GEMM path adds them (the caller applies the activation) */
static inline void fastnn_tiny_forward(float *restrict yt, const float *restrict xt,
                                       const float *restrict w, const float *restrict b,
                                       ptrdiff_t ld, ptrdiff_t ins, ptrdiff_t outs) {
    for (ptrdiff_t o = 0; o < outs; o++) {
        for (ptrdiff_t c = 0; c < ld; c += FASTNN_TINY_LANES) {
            fastnn_tiny_v acc = {0};
            for (ptrdiff_t i = 0; i < ins; i++)
                acc += w[o * ins + i] * fastnn_tiny_load(xt + i * ld + c);
            fastnn_tiny_store(yt + o * ld + c, acc + b[o]);
        }
    }
}

/* gt's padding lanes (columns n..ld of its K rows) = 0 */
static inline void fastnn_tiny_zero_padding(float *gt, ptrdiff_t n, ptrdiff_t ld, ptrdiff_t K) {
    for (ptrdiff_t k = 0; k < K; k++)
        for (ptrdiff_t r = n; r < ld; r++)
            gt[k * ld + r] = 0.0f;
}

static inline ptrdiff_t fastnn_tiny_argmax(const float *zt, ptrdiff_t r, ptrdiff_t ld, ptrdiff_t K) {
    ptrdiff_t best = 0;  /* the first largest, as count_correct_kernel */
    for (ptrdiff_t k = 1; k < K; k++)
        best = zt[k * ld + r] > zt[best * ld + r] ? k : best;
    return best;
}

/* Mean softmax cross-entropy of logits zt (K, ld) against labels: gt (K, ld) = (softmax -
 * onehot) / n; *correct = rows whose first largest logit is the label. `scratch`: 2 ld floats.
 * Each row's sum of exponentials is taken in double, as the row-major kernel does (loss.pyx):
 * the loss is m + log(s) - z[label], and with s = 1 + (small) a float sum would lose the small
 * part. */
static inline double fastnn_tiny_softmax_ce(float *restrict gt, const float *restrict zt,
                                            const int64_t *restrict labels, ptrdiff_t n,
                                            ptrdiff_t ld, ptrdiff_t K, float *restrict scratch,
                                            ptrdiff_t *correct) {
    float *restrict m = scratch, *restrict scale = scratch + ld;
    const double inv_n = 1.0 / (double)n;
    #pragma omp simd
    for (ptrdiff_t r = 0; r < ld; r++)
        m[r] = zt[r];
    for (ptrdiff_t k = 1; k < K; k++) {
        #pragma omp simd
        for (ptrdiff_t r = 0; r < ld; r++)
            m[r] = zt[k * ld + r] > m[r] ? zt[k * ld + r] : m[r];
    }
    for (ptrdiff_t k = 0; k < K; k++) {  /* shifted by the max: no overflow, the sum is >= 1 */
        #pragma omp simd
        for (ptrdiff_t r = 0; r < ld; r++)
            gt[k * ld + r] = fastnn_expf(zt[k * ld + r] - m[r]);
    }
    double total = 0.0;
    ptrdiff_t right = 0;
    for (ptrdiff_t r = 0; r < n; r++) {
        const ptrdiff_t label = (ptrdiff_t)labels[r];
        double s = 0.0;
        for (ptrdiff_t k = 0; k < K; k++)
            s += gt[k * ld + r];
        right += fastnn_tiny_argmax(zt, r, ld, K) == label;
        total += (double)m[r] + log(s) - (double)zt[label * ld + r];
        scale[r] = (float)(inv_n / s);
    }
    for (ptrdiff_t k = 0; k < K; k++) {
        #pragma omp simd
        for (ptrdiff_t r = 0; r < n; r++)
            gt[k * ld + r] *= scale[r];
    }
    for (ptrdiff_t r = 0; r < n; r++)
        gt[(ptrdiff_t)labels[r] * ld + r] -= (float)inv_n;
    fastnn_tiny_zero_padding(gt, n, ld, K);
    *correct = right;
    return total * inv_n;
}

/* Mean over the batch of half the squared distance between outputs zt (K, ld) and one-hot
 * labels: gt = (z - onehot) / n; *correct as above. */
static inline double fastnn_tiny_mse_labels(float *restrict gt, const float *restrict zt,
                                            const int64_t *restrict labels, ptrdiff_t n,
                                            ptrdiff_t ld, ptrdiff_t K, ptrdiff_t *correct) {
    const float inv_n = 1.0f / (float)n;
    double total = 0.0;
    ptrdiff_t right = 0;
    for (ptrdiff_t k = 0; k < K; k++) {
        double part = 0.0;
        #pragma omp simd reduction(+:part)
        for (ptrdiff_t r = 0; r < n; r++) {
            const float diff = zt[k * ld + r] - (float)(labels[r] == k);
            gt[k * ld + r] = diff * inv_n;
            part += (double)diff * diff;
        }
        total += part;
    }
    for (ptrdiff_t r = 0; r < n; r++)
        right += fastnn_tiny_argmax(zt, r, ld, K) == (ptrdiff_t)labels[r];
    fastnn_tiny_zero_padding(gt, n, ld, K);
    *correct = right;
    return 0.5 * total / (double)n;
}

/* The layer's backward from gt (outs, ld) = d loss / dz (the caller applied the activation's
 * slope): dw (outs, ins) = gt @ xt.T and db = row sums of gt (dot products over the batch, in
 * vector partial sums), and, when dxt is not NULL, dxt (ins, ld) = w.T @ gt, with w as it is
 * before any update (its padding lanes 0, as gt's). */
static inline void fastnn_tiny_backward(float *restrict dxt, float *restrict dw,
                                        float *restrict db, float *restrict gt,
                                        const float *restrict xt, const float *restrict w,
                                        ptrdiff_t ld, ptrdiff_t ins, ptrdiff_t outs) {
    for (ptrdiff_t o = 0; o < outs; o++) {
        const float *g = gt + o * ld;
        fastnn_tiny_v sum = {0};
        for (ptrdiff_t c = 0; c < ld; c += FASTNN_TINY_LANES)
            sum += fastnn_tiny_load(g + c);
        db[o] = fastnn_tiny_hsum(sum);
        for (ptrdiff_t i = 0; i < ins; i++) {
            const float *x = xt + i * ld;
            fastnn_tiny_v dot = {0};
            for (ptrdiff_t c = 0; c < ld; c += FASTNN_TINY_LANES)
                dot += fastnn_tiny_load(g + c) * fastnn_tiny_load(x + c);
            dw[o * ins + i] = fastnn_tiny_hsum(dot);
        }
    }
    if (dxt == NULL)
        return;
    for (ptrdiff_t i = 0; i < ins; i++) {
        for (ptrdiff_t c = 0; c < ld; c += FASTNN_TINY_LANES) {
            fastnn_tiny_v acc = {0};
            for (ptrdiff_t o = 0; o < outs; o++)
                acc += w[o * ins + i] * fastnn_tiny_load(gt + o * ld + c);
            fastnn_tiny_store(dxt + i * ld + c, acc);
        }
    }
}

/* Plain SGD on one array: w -= lr * dw */
static inline void fastnn_tiny_sgd(float *restrict w, const float *restrict dw, ptrdiff_t size,
                                   float lr) {
    #pragma omp simd
    for (ptrdiff_t j = 0; j < size; j++)
        w[j] -= lr * dw[j];
}

#endif
