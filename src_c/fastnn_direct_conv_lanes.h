/* The direct convolution's bodies for one vector width: fastnn_direct_conv.h includes this file
 * once per lane count, with FASTNN_DC_L = 8 (the baseline and AVX2 clones) or 16 (the AVX-512
 * clone), and every name here gets the suffix _8 or _16. Same code, so the two widths cannot
 * drift apart; the comments in fastnn_direct_conv.h describe the tiling.
 *
 * A row of Q outputs is covered by vectors of L lanes at q0 = 0, L, 2L, ... and, when Q % L,
 * one more at Q - L overlapping the one before: so Q >= L is required (the dispatch ensures it).
 */
#define DC_L FASTNN_DC_L
#define DC_V FASTNN_DC_CAT(fastnn_dcv, FASTNN_DC_L)
#define DC_VI FASTNN_DC_CAT(fastnn_dcvi, FASTNN_DC_L)
#define DC_FN(name) FASTNN_DC_CAT(name##_, FASTNN_DC_L)
#if FASTNN_DC_L == 16
#define DC_LANES {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
#else
#define DC_LANES {0, 1, 2, 3, 4, 5, 6, 7}
#endif

typedef float DC_V __attribute__((vector_size(4 * FASTNN_DC_L)));
typedef int DC_VI __attribute__((vector_size(4 * FASTNN_DC_L)));

static inline __attribute__((always_inline)) DC_V DC_FN(fastnn_dc_load)(const float *p) {
    DC_V v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline __attribute__((always_inline)) DC_V DC_FN(fastnn_dc_splat)(float f) {
    const DC_V zero = {0};
    return zero + f;
}

/* Sum of the lanes, pairwise (the 8-lane order the AVX2 build always had). */
static inline __attribute__((always_inline)) float DC_FN(fastnn_dc_hsum)(DC_V a) {
#if FASTNN_DC_L == 16
    float h[8];
    for (int l = 0; l < 8; l++)
        h[l] = a[l] + a[l + 8];
#else
    const DC_V h = a;
#endif
    return ((h[0] + h[4]) + (h[1] + h[5])) + ((h[2] + h[6]) + (h[3] + h[7]));
}

/* Vectors per output row, and the first column of vector j of a row. */
static inline long DC_FN(fastnn_dconv_row_vectors)(const fastnn_dconv_geom *g) {
    return (g->Q + DC_L - 1) / DC_L;
}

static inline __attribute__((always_inline)) long DC_FN(fastnn_dconv_q0)(const fastnn_dconv_geom *g, long j) {
    long q0 = DC_L * j;
    return q0 + DC_L > g->Q ? g->Q - DC_L : q0;
}

/* ---- forward ------------------------------------------------------------------------------ */

/* y (K, P*Q) rows k0..k0+kb of one sample, vectors v0..v0+vb (flat index p * row_vectors + j),
 * from that sample's x (C, H, W): y = b + sum over taps of w * window */
static inline __attribute__((always_inline)) void DC_FN(fastnn_dconv_fwd_tile)(
        const int avx, const int kb, const int vb, const long R, const long S,
        const fastnn_dconv_geom *g, float *y, const float *x, const float *w, const float *b,
        long k0, long v0) {
    const long rv = DC_FN(fastnn_dconv_row_vectors)(g), PQ = g->P * g->Q, HW = g->H * g->W;
    const long CRS = g->C * R * S;
    DC_V acc[FASTNN_DCONV_FWD_KB][FASTNN_DCONV_FWD_VB];
    long in_off[FASTNN_DCONV_FWD_VB], out_off[FASTNN_DCONV_FWD_VB];
    const float *wk[FASTNN_DCONV_FWD_KB];
    int i, j;
    _Pragma("GCC unroll 8")
    for (j = 0; j < vb; j++) {
        long p = (v0 + j) / rv, q0 = DC_FN(fastnn_dconv_q0)(g, (v0 + j) % rv);
        in_off[j] = p * g->W + q0;
        out_off[j] = p * g->Q + q0;
    }
    _Pragma("GCC unroll 8")
    for (i = 0; i < kb; i++) {
        wk[i] = w + (k0 + i) * CRS;
        _Pragma("GCC unroll 8")
        for (j = 0; j < vb; j++)
            acc[i][j] = DC_FN(fastnn_dc_splat)(b[k0 + i]);
    }
    long t = 0;
    for (long c = 0; c < g->C; c++) {
        for (long r = 0; r < R; r++) {
            const float *xr = x + c * HW + r * g->W;
            for (long s = 0; s < S; s++, t++) {
                DC_V xv[FASTNN_DCONV_FWD_VB];
                _Pragma("GCC unroll 8")
                for (j = 0; j < vb; j++)
                    xv[j] = DC_FN(fastnn_dc_load)(xr + s + in_off[j]);
                _Pragma("GCC unroll 8")
                for (j = 0; j < vb; j++)
                    FASTNN_DC_IN_REGISTER(xv[j], avx);
                _Pragma("GCC unroll 8")
                for (i = 0; i < kb; i++) {
                    /* scalar * vector: a broadcast load (a {w, w, ...} vector took 7 inserts in the AVX2
                       clone of a portable build) */
                    float wv = wk[i][t];
                    _Pragma("GCC unroll 8")
                    for (j = 0; j < vb; j++)
                        acc[i][j] += wv * xv[j];
                }
            }
        }
    }
    _Pragma("GCC unroll 8")
    for (i = 0; i < kb; i++)
        _Pragma("GCC unroll 8")
        for (j = 0; j < vb; j++)
            memcpy(y + (k0 + i) * PQ + out_off[j], &acc[i][j], sizeof acc[i][j]);
}

/* All vectors of filters k0..k0+kb (kb <= FWD_KB) for one sample, taps R x S. */
static inline __attribute__((always_inline)) void DC_FN(fastnn_dconv_fwd_taps)(
        const int avx, const long R, const long S, const fastnn_dconv_geom *g, float *y,
        const float *x, const float *w, const float *b, long k0, int kb) {
    const long nv = g->P * DC_FN(fastnn_dconv_row_vectors)(g);
    long v = 0;
#define FASTNN_DC_FWD_ROW(KB)                                                                     \
    for (v = 0; v + FASTNN_DCONV_FWD_VB <= nv; v += FASTNN_DCONV_FWD_VB)                          \
        DC_FN(fastnn_dconv_fwd_tile)(avx, KB, FASTNN_DCONV_FWD_VB, R, S, g, y, x, w, b, k0, v);  \
    if (nv - v == 2) DC_FN(fastnn_dconv_fwd_tile)(avx, KB, 2, R, S, g, y, x, w, b, k0, v);  \
    else if (nv - v == 1) DC_FN(fastnn_dconv_fwd_tile)(avx, KB, 1, R, S, g, y, x, w, b, k0, v);
    switch (kb) {
    case 4: FASTNN_DC_FWD_ROW(4) break;
    case 3: FASTNN_DC_FWD_ROW(3) break;
    case 2: FASTNN_DC_FWD_ROW(2) break;
    default: FASTNN_DC_FWD_ROW(1) break;
    }
#undef FASTNN_DC_FWD_ROW
}

/* 5 x 5 and 3 x 3 taps as constants: the tap loops unroll into straight code with constant
 * offsets. With the sizes read from g, LeNet's conv2 forward ran its 12-FMA tile at 59-65% of
 * the FMA peak: a loop of S = 5 trips per tap row, its pointers spilled beside 12 accumulators. */
static inline __attribute__((always_inline)) void DC_FN(fastnn_dconv_fwd_body)(
        const int avx, const fastnn_dconv_geom *g, float *y, const float *x, const float *w, const float *b,
        long k0, int kb) {
    if (g->R == 5 && g->S == 5)
        DC_FN(fastnn_dconv_fwd_taps)(avx, 5, 5, g, y, x, w, b, k0, kb);
    else if (g->R == 3 && g->S == 3)
        DC_FN(fastnn_dconv_fwd_taps)(avx, 3, 3, g, y, x, w, b, k0, kb);
    else
        DC_FN(fastnn_dconv_fwd_taps)(avx, g->R, g->S, g, y, x, w, b, k0, kb);
}

/* ---- dW --------------------------------------------------------------------------------------- */

/* dw (K, C*R*S) entries [k0, k0+kb) x [t0, t0+tb) (+)= sum over samples [n0, n1), all
 * vectors, of dy * window; lanes an earlier vector of the row already covered are masked. */
static inline __attribute__((always_inline)) void DC_FN(fastnn_dconv_dw_tile)(
        const int avx, const int kb, const int tb, const long R, const long S,
        const fastnn_dconv_geom *g, float *dw, const float *dy, const float *x, long k0, long t0,
        long n0, long n1, int accumulate) {
    const long PQ = g->P * g->Q, HW = g->H * g->W;
    const long CHW = g->C * HW, KPQ = g->K * PQ, RS = R * S, CRS = g->C * RS;
    const DC_VI lane = DC_LANES;
    DC_V acc[FASTNN_DCONV_DW_KB][FASTNN_DCONV_DW_TB];
    long tap_off[FASTNN_DCONV_DW_TB];
    int i, j;
    _Pragma("GCC unroll 8")
    for (j = 0; j < tb; j++) {
        long t = t0 + j;
        tap_off[j] = (t / RS) * HW + ((t / S) % R) * g->W + t % S;
    }
    _Pragma("GCC unroll 8")
    for (i = 0; i < kb; i++)
        _Pragma("GCC unroll 8")
        for (j = 0; j < tb; j++)
            acc[i][j] = DC_FN(fastnn_dc_splat)(0.0f);
    /* full vectors q0 = 0, L, ...; then, if Q % L, one at Q - L whose first L - Q % L lanes the
       previous vector already counted */
    const long full = g->Q / DC_L;
#define FASTNN_DC_DW_STEP(DY, X, MASKED)                                                   \
    do {                                                                                   \
        DC_V dv[FASTNN_DCONV_DW_KB];                                                       \
        _Pragma("GCC unroll 8")                                                            \
        for (i = 0; i < kb; i++) {                                                         \
            dv[i] = DC_FN(fastnn_dc_load)((DY) + i * PQ);                                  \
            if (MASKED) dv[i] = (DC_V)((DC_VI)dv[i] & (lane >= (int)(DC_L - g->Q % DC_L))); \
            FASTNN_DC_IN_REGISTER(dv[i], avx);                                             \
        }                                                                                  \
        _Pragma("GCC unroll 8")                                                            \
        for (j = 0; j < tb; j++) {                                                         \
            DC_V xv = DC_FN(fastnn_dc_load)((X) + tap_off[j]);                             \
            FASTNN_DC_IN_REGISTER(xv, avx);                                                \
            _Pragma("GCC unroll 8")                                                        \
            for (i = 0; i < kb; i++)                                                       \
                acc[i][j] += dv[i] * xv;                                                   \
        }                                                                                  \
    } while (0)
    /* Samples innermost: a regular stride and a trip count of a whole chunk, where rows of one
       vector (LeNet's conv2) left the loop overhead per FMA tile. Two loop nests, so the mask
       is not live (a 17th register: spills) in the main one. */
    for (long p = 0; p < g->P; p++) {
        for (long jv = 0; jv <= full; jv++) {
            long q0 = jv < full ? DC_L * jv : g->Q - DC_L;
            const float *dyv = dy + n0 * KPQ + k0 * PQ + p * g->Q + q0;
            const float *xv0 = x + n0 * CHW + p * g->W + q0;
            if (jv < full) {
                for (long n = n0; n < n1; n++, dyv += KPQ, xv0 += CHW)
                    FASTNN_DC_DW_STEP(dyv, xv0, 0);
            } else if (g->Q % DC_L) {
                for (long n = n0; n < n1; n++, dyv += KPQ, xv0 += CHW)
                    FASTNN_DC_DW_STEP(dyv, xv0, 1);
            }
        }
    }
#undef FASTNN_DC_DW_STEP
    _Pragma("GCC unroll 8")
    for (i = 0; i < kb; i++) {
        _Pragma("GCC unroll 8")
        for (j = 0; j < tb; j++) {
            float sum = DC_FN(fastnn_dc_hsum)(acc[i][j]);
            float *out = dw + (k0 + i) * CRS + t0 + j;
            *out = accumulate ? *out + sum : sum;
        }
    }
}

static inline __attribute__((always_inline)) void DC_FN(fastnn_dconv_dw_taps)(
        const int avx, const long R, const long S, const fastnn_dconv_geom *g, float *dw,
        const float *dy, const float *x, long k0, int kb, long t0, int tb, long n0, long n1,
        int accumulate) {
/* Only the tile sizes this build's tile holds (kb <= DW_KB, tb <= DW_TB: conv.pyx's blocks), so
   no instance indexes past its accumulators. */
#if FASTNN_DCONV_DW_TB >= 5
#define FASTNN_DC_DW_TB5(KB) \
    case 5: DC_FN(fastnn_dconv_dw_tile)(avx, KB, 5, R, S, g, dw, dy, x, k0, t0, n0, n1, accumulate); break;
#else
#define FASTNN_DC_DW_TB5(KB)
#endif
#define FASTNN_DC_DW_TB(KB)                                                                                   \
    switch (tb) {                                                                                              \
    FASTNN_DC_DW_TB5(KB)                                                                                       \
    case 4: DC_FN(fastnn_dconv_dw_tile)(avx, KB, 4, R, S, g, dw, dy, x, k0, t0, n0, n1, accumulate); break;   \
    case 3: DC_FN(fastnn_dconv_dw_tile)(avx, KB, 3, R, S, g, dw, dy, x, k0, t0, n0, n1, accumulate); break;   \
    case 2: DC_FN(fastnn_dconv_dw_tile)(avx, KB, 2, R, S, g, dw, dy, x, k0, t0, n0, n1, accumulate); break;   \
    default: DC_FN(fastnn_dconv_dw_tile)(avx, KB, 1, R, S, g, dw, dy, x, k0, t0, n0, n1, accumulate); break;  \
    }
    switch (kb) {
#if FASTNN_DCONV_DW_KB >= 5
    case 5: FASTNN_DC_DW_TB(5) break;
    case 4: FASTNN_DC_DW_TB(4) break;
#endif
    case 3: FASTNN_DC_DW_TB(3) break;
    case 2: FASTNN_DC_DW_TB(2) break;
    default: FASTNN_DC_DW_TB(1) break;
    }
#undef FASTNN_DC_DW_TB
#undef FASTNN_DC_DW_TB5
}

/* 5 x 5 and 3 x 3 taps as constants, as in the forward: a tile's tap offsets then cost
 * multiplies instead of 64-bit divisions (three per tap, per tile and chunk of samples). */
static inline __attribute__((always_inline)) void DC_FN(fastnn_dconv_dw_body)(
        const int avx, const fastnn_dconv_geom *g, float *dw, const float *dy, const float *x, long k0, int kb,
        long t0, int tb, long n0, long n1, int accumulate) {
    if (g->R == 5 && g->S == 5)
        DC_FN(fastnn_dconv_dw_taps)(avx, 5, 5, g, dw, dy, x, k0, kb, t0, tb, n0, n1, accumulate);
    else if (g->R == 3 && g->S == 3)
        DC_FN(fastnn_dconv_dw_taps)(avx, 3, 3, g, dw, dy, x, k0, kb, t0, tb, n0, n1, accumulate);
    else
        DC_FN(fastnn_dconv_dw_taps)(avx, g->R, g->S, g, dw, dy, x, k0, kb, t0, tb, n0, n1, accumulate);
}

/* ---- dX ----------------------------------------------------------------------------------- */

/* dx plane c of one sample (H, W) += its share from tap row r, columns s0 .. s0+sb, output
 * vectors v0 .. v0+vb: dx[c, p+r, q+s] += sum over k of w[k, c, r, s] * dy[k, p, q]. The
 * transposed convolution as a scatter: each dy vector is read once per (r, s-block) from L1 and
 * the sums over k stay in registers; only the finished tile is added into dx. Lanes that an
 * overlapping last vector repeats are masked to 0 in dy (masked = 1). */
static inline __attribute__((always_inline)) void DC_FN(fastnn_dconv_dx_tile)(
        const int avx, const int sb, const int vb, const int masked, const fastnn_dconv_geom *g, float *dxc,
        const float *dyn, const float *w, long c, long r, long s0, long v0) {
    const long rv = DC_FN(fastnn_dconv_row_vectors)(g), PQ = g->P * g->Q, CRS = g->C * g->R * g->S;
    const DC_VI lane = DC_LANES;
    DC_V acc[FASTNN_DCONV_DX_SB][FASTNN_DCONV_DX_VB];
    DC_VI keep[FASTNN_DCONV_DX_VB];
    long dy_off[FASTNN_DCONV_DX_VB], dx_off[FASTNN_DCONV_DX_VB];
    int i, j;
    _Pragma("GCC unroll 8")
    for (j = 0; j < vb; j++) {
        long p = (v0 + j) / rv, jv = (v0 + j) % rv, q0 = DC_FN(fastnn_dconv_q0)(g, jv);
        dy_off[j] = p * g->Q + q0;
        dx_off[j] = (p + r) * g->W + q0 + s0;
        if (masked)
            keep[j] = lane >= (int)(DC_L * jv - q0);
    }
    _Pragma("GCC unroll 6")
    for (i = 0; i < sb; i++)
        _Pragma("GCC unroll 8")
        for (j = 0; j < vb; j++)
            acc[i][j] = DC_FN(fastnn_dc_splat)(0.0f);
    const float *wk = w + (c * g->R + r) * g->S + s0;
    const float *dyk = dyn;
    for (long k = 0; k < g->K; k++, wk += CRS, dyk += PQ) {
        DC_V dv[FASTNN_DCONV_DX_VB];
        _Pragma("GCC unroll 8")
        for (j = 0; j < vb; j++) {
            dv[j] = DC_FN(fastnn_dc_load)(dyk + dy_off[j]);
            if (masked)
                dv[j] = (DC_V)((DC_VI)dv[j] & keep[j]);
            FASTNN_DC_IN_REGISTER(dv[j], avx);
        }
        _Pragma("GCC unroll 6")
        for (i = 0; i < sb; i++) {
            float wv = wk[i];  /* scalar * vector, as in the forward tile */
            _Pragma("GCC unroll 8")
            for (j = 0; j < vb; j++)
                acc[i][j] += wv * dv[j];
        }
    }
    /* acc[i][j] belongs at columns +i: shift each into a 2L-lane window (lo, hi) in registers
       and add that into dx once. Adding the shifted vectors into dx one by one made every load
       overlap the store before it (store-forwarding stalls: ~2x slower). The shuffle masks are
       constants once the loop over i is unrolled: lane l of lo takes l - i (l >= i), of hi
       L - i + l (l < i); index L picks a zero. */
    const DC_V zero = DC_FN(fastnn_dc_splat)(0.0f);
    _Pragma("GCC unroll 8")
    for (j = 0; j < vb; j++) {
        DC_V lo = acc[0][j], hi = zero;
        _Pragma("GCC unroll 6")
        for (i = 1; i < sb; i++) {
            const DC_VI from_acc = lane >= i;
            const DC_VI to_lo = ((lane - i) & from_acc) | (DC_L & ~from_acc);
            const DC_VI to_hi = ((lane + (DC_L - i)) & ~from_acc) | (DC_L & from_acc);
            lo += __builtin_shuffle(acc[i][j], zero, to_lo);
            hi += __builtin_shuffle(acc[i][j], zero, to_hi);
        }
        float *out = dxc + dx_off[j];
        DC_V sum = DC_FN(fastnn_dc_load)(out) + lo;
        memcpy(out, &sum, sizeof sum);
        _Pragma("GCC unroll 6")
        for (i = 0; i + 1 < sb; i++)
            out[DC_L + i] += hi[i];
    }
}

/* Whole dx plane c of one sample, overwritten. */
static inline __attribute__((always_inline)) void DC_FN(fastnn_dconv_dx_body)(
        const int avx, const fastnn_dconv_geom *g, float *dxc, const float *dyn, const float *w, long c) {
    const long rv = DC_FN(fastnn_dconv_row_vectors)(g), nv = g->P * rv;
    const int tails = g->Q % DC_L != 0;
    memset(dxc, 0, g->H * g->W * sizeof(float));
    for (long r = 0; r < g->R; r++) {
        for (long s0 = 0; s0 < g->S; s0 += FASTNN_DCONV_DX_SB) {
            int sb = g->S - s0 < FASTNN_DCONV_DX_SB ? (int)(g->S - s0) : FASTNN_DCONV_DX_SB;
            /* FASTNN_DCONV_DX_ACC accumulators at most: 12 (5 x 2 or 3 x 4) or 20 (5 x 4) */
            int vmax = sb * FASTNN_DCONV_DX_VB <= FASTNN_DCONV_DX_ACC ? FASTNN_DCONV_DX_VB : 2;
            for (long v = 0; v < nv; v += vmax) {
                int vb = nv - v < vmax ? (int)(nv - v) : vmax;
#define FASTNN_DC_DX_CALL(SB, VB)                                                                  \
                if (tails) DC_FN(fastnn_dconv_dx_tile)(avx, SB, VB, 1, g, dxc, dyn, w, c, r, s0, v); \
                else DC_FN(fastnn_dconv_dx_tile)(avx, SB, VB, 0, g, dxc, dyn, w, c, r, s0, v);
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

#undef DC_LANES
#undef DC_FN
#undef DC_VI
#undef DC_V
#undef DC_L
