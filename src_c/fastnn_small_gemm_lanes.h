/* The small GEMM's bodies for one vector width: fastnn_small_gemm.h includes this file once per
 * lane count, FASTNN_GL_L = 8 (the baseline and AVX2 clones) or 16 (the AVX-512 clone), and
 * every name here gets the suffix _8 or _16. The dot shape steps k by L lanes (the rest of k
 * scalar); the axpy shape's blocks are 4 rows x 2L columns, then L (the rest of n a row at a time).
 */
#define GL_L FASTNN_GL_L
#define GL_V FASTNN_GL_CAT(fastnn_gv, FASTNN_GL_L)
#define GL_FN(name) FASTNN_GL_CAT(name##_, FASTNN_GL_L)

typedef float GL_V __attribute__((vector_size(4 * FASTNN_GL_L)));

static inline __attribute__((always_inline)) GL_V GL_FN(fastnn_gload)(const float *p) {
    GL_V v;
    memcpy(&v, p, sizeof v);  /* unaligned load: compiles to one vmovups */
    return v;
}

static inline __attribute__((always_inline)) void GL_FN(fastnn_gstore)(float *p, GL_V v) {
    memcpy(p, &v, sizeof v);
}

static inline __attribute__((always_inline)) float GL_FN(fastnn_ghsum)(GL_V v) {
#if FASTNN_GL_L == 16
    float h[8];
    for (int l = 0; l < 8; l++)
        h[l] = v[l] + v[l + 8];
#else
    const GL_V h = v;
#endif
    return ((h[0] + h[4]) + (h[1] + h[5])) + ((h[2] + h[6]) + (h[3] + h[7]));
}

/* One (rows <= 2) x (cols <= 4) block of the dot shape. */
static inline __attribute__((always_inline)) void GL_FN(fastnn_dot_block)(
        int rows, int cols, int k, float alpha, const float *a, int lda, const float *b, int ldb,
        float beta, float *c, int ldc) {
    GL_V acc[2][4] = {{{0}}};
    float tail[2][4] = {{0}};
    int kl = k - k % GL_L, p, i, j;
    for (p = 0; p < kl; p += GL_L) {
        GL_V a0 = GL_FN(fastnn_gload)(a + p), a1 = rows > 1 ? GL_FN(fastnn_gload)(a + lda + p) : a0;
        for (j = 0; j < 4; j++) {
            if (j < cols) {
                GL_V bj = GL_FN(fastnn_gload)(b + j * ldb + p);
                acc[0][j] += a0 * bj;
                acc[1][j] += a1 * bj;
            }
        }
    }
    for (p = kl; p < k; p++)
        for (i = 0; i < rows; i++)
            for (j = 0; j < cols; j++)
                tail[i][j] += a[i * lda + p] * b[j * ldb + p];
    for (i = 0; i < rows; i++)
        for (j = 0; j < cols; j++)
            c[i * ldc + j] = fastnn_scale(GL_FN(fastnn_ghsum)(acc[i][j]) + tail[i][j], alpha, beta,
                                          c + i * ldc + j);
}

static inline __attribute__((always_inline)) void GL_FN(fastnn_gemm_dot_pass)(
        int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb,
        float beta, float *c, int ldc) {
    int i, j;
    /* B's 4-row panel stays in L1 while A's rows stream past it. */
    for (j = 0; j + 4 <= n; j += 4) {
        for (i = 0; i + 2 <= m; i += 2)
            GL_FN(fastnn_dot_block)(2, 4, k, alpha, a + i * lda, lda, b + j * ldb, ldb, beta, c + i * ldc + j, ldc);
        if (i < m)
            GL_FN(fastnn_dot_block)(1, 4, k, alpha, a + i * lda, lda, b + j * ldb, ldb, beta, c + i * ldc + j, ldc);
    }
    if (j < n) {
        for (i = 0; i + 2 <= m; i += 2)
            GL_FN(fastnn_dot_block)(2, n - j, k, alpha, a + i * lda, lda, b + j * ldb, ldb, beta, c + i * ldc + j, ldc);
        if (i < m)
            GL_FN(fastnn_dot_block)(1, n - j, k, alpha, a + i * lda, lda, b + j * ldb, ldb, beta, c + i * ldc + j, ldc);
    }
}

static inline __attribute__((always_inline)) void GL_FN(fastnn_gemm_dot_body)(
        int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb,
        float beta, float *c, int ldc) {
    int p0;
    if (k <= 8 * FASTNN_DOT_KC || m + n > 64) {
        GL_FN(fastnn_gemm_dot_pass)(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    for (p0 = 0; p0 < k; p0 += FASTNN_DOT_KC) {  /* later passes add to C (beta = 1) */
        int kc = k - p0 < FASTNN_DOT_KC ? k - p0 : FASTNN_DOT_KC;
        GL_FN(fastnn_gemm_dot_pass)(m, n, kc, alpha, a + p0, lda, b + p0, ldb, p0 ? 1.0f : beta, c, ldc);
    }
}

/* One (rows <= 4) x (vecs * L) block of the axpy shape, vecs 1 or 2. */
static inline __attribute__((always_inline)) void GL_FN(fastnn_axpy_block)(
        int rows, int vecs, int k, float alpha, const float *a, int sam, int sak, const float *b,
        int ldb, float beta, float *c, int ldc) {
    GL_V acc[4][2] = {{{0}}};
    int p, i, h;
    for (p = 0; p < k; p++) {
        GL_V b0 = GL_FN(fastnn_gload)(b + p * ldb);
        GL_V b1 = vecs > 1 ? GL_FN(fastnn_gload)(b + p * ldb + GL_L) : b0;
        for (i = 0; i < 4; i++) {
            if (i < rows) {
                float s = a[i * sam + p * sak];
                acc[i][0] += s * b0;
                if (vecs > 1)
                    acc[i][1] += s * b1;
            }
        }
    }
    for (i = 0; i < rows; i++) {
        for (h = 0; h < vecs; h++) {
            float *ci = c + i * ldc + GL_L * h;
            GL_V out = alpha * acc[i][h];
            if (beta != 0.0f)
                out += beta * GL_FN(fastnn_gload)(ci);
            GL_FN(fastnn_gstore)(ci, out);
        }
    }
}

/* All rows of the axpy shape for one column panel of vecs * L columns. `rows` reaches the block
 * as a constant (switch), so its accumulators stay in registers. */
static inline __attribute__((always_inline)) void GL_FN(fastnn_axpy_panel)(
        int vecs, int m, int k, float alpha, const float *a, int sam, int sak, const float *b,
        int ldb, float beta, float *c, int ldc) {
    for (int i = 0; i < m; i += 4) {
        const float *ai = a + i * sam;
        float *ci = c + i * ldc;
        switch (m - i < 4 ? m - i : 4) {
        case 4: GL_FN(fastnn_axpy_block)(4, vecs, k, alpha, ai, sam, sak, b, ldb, beta, ci, ldc); break;
        case 3: GL_FN(fastnn_axpy_block)(3, vecs, k, alpha, ai, sam, sak, b, ldb, beta, ci, ldc); break;
        case 2: GL_FN(fastnn_axpy_block)(2, vecs, k, alpha, ai, sam, sak, b, ldb, beta, ci, ldc); break;
        default: GL_FN(fastnn_axpy_block)(1, vecs, k, alpha, ai, sam, sak, b, ldb, beta, ci, ldc);
        }
    }
}

/* The last cols < L columns of the axpy shape, a row at a time: the inner loop runs across
 * columns, so no addition waits on the one before it (a k-inner loop would be latency-bound). */
static inline __attribute__((always_inline)) void GL_FN(fastnn_axpy_narrow)(
        int rows, int cols, int k, float alpha, const float *a, int sam, int sak, const float *b,
        int ldb, float beta, float *c, int ldc) {
    int i, j, p;
    for (i = 0; i < rows; i++) {
        float acc[GL_L] = {0};
        for (p = 0; p < k; p++) {
            float s = a[i * sam + p * sak];
            for (j = 0; j < cols; j++)
                acc[j] += s * b[p * ldb + j];
        }
        for (j = 0; j < cols; j++)
            c[i * ldc + j] = fastnn_scale(acc[j], alpha, beta, c + i * ldc + j);
    }
}

static inline __attribute__((always_inline)) void GL_FN(fastnn_gemm_axpy_body)(
        int m, int n, int k, float alpha, const float *a, int sam, int sak, const float *b,
        int ldb, float beta, float *c, int ldc) {
    int j;
    /* A 2L-column panel of B (k x 8L bytes) is reused by every row block; then one L-column
       panel (the 16-lane build's 784 = 24 x 32 + 16 columns left 16 to the scalar loop). */
    for (j = 0; j + 2 * GL_L <= n; j += 2 * GL_L)
        GL_FN(fastnn_axpy_panel)(2, m, k, alpha, a, sam, sak, b + j, ldb, beta, c + j, ldc);
    if (n - j >= GL_L) {
        GL_FN(fastnn_axpy_panel)(1, m, k, alpha, a, sam, sak, b + j, ldb, beta, c + j, ldc);
        j += GL_L;
    }
    if (j < n)
        GL_FN(fastnn_axpy_narrow)(m, n - j, k, alpha, a, sam, sak, b + j, ldb, beta, c + j, ldc);
}

#undef GL_FN
#undef GL_V
#undef GL_L
