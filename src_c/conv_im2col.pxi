# Included by conv.pyx: the geometry of one conv2d call and the plain path's data movement
# (im2col, col2im, a row sum). Included rather than cimported so that the compiler sees these
# helpers in the same unit as the loops that call them, as before they moved here.

cdef struct Geom:
    Py_ssize_t N, C, H, W, K, R, S, P, Q
    Py_ssize_t sh, sw, ph, pw


cdef inline Geom _geom(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w,
                       Py_ssize_t P, Py_ssize_t Q, int sh, int sw, int ph, int pw) noexcept nogil:
    cdef Geom g
    g.N, g.C, g.H, g.W = x.shape[0], x.shape[1], x.shape[2], x.shape[3]
    g.K, g.R, g.S = w.shape[0], w.shape[2], w.shape[3]
    g.P, g.Q, g.sh, g.sw, g.ph, g.pw = P, Q, sh, sw, ph, pw
    return g


cdef inline void _q_range(const Geom* g, Py_ssize_t s, Py_ssize_t* q0, Py_ssize_t* q1) noexcept nogil:
    # Output columns q whose input column q*sw - pw + s lies inside [0, W): q in [q0, q1).
    cdef Py_ssize_t lo = g.pw - s, hi = g.W - 1 + g.pw - s
    q0[0] = 0 if lo <= 0 else (lo + g.sw - 1) // g.sw
    q1[0] = 0 if hi < 0 else min(g.Q, hi // g.sw + 1)
    if q1[0] < q0[0]:
        q1[0] = q0[0]


cdef void _im2col_row(floating* dst, const floating* x, Py_ssize_t row, const Geom* g) noexcept nogil:
    # row (c, r, s) of col (C*R*S, N*P*Q): x[n, c, p*sh - ph + r, q*sw - pw + s], 0 in the padding
    cdef Py_ssize_t RS = g.R * g.S, c = row // RS, r = (row // g.S) % g.R, s = row % g.S
    cdef Py_ssize_t n, p, q, h, off, q0, q1
    cdef floating* d
    cdef const floating* src
    if g.ph == 0 and g.pw == 0 and g.sh == 1 and g.sw == 1:
        # LeNet's case: every window row is inside x, so each (n, p) is a plain copy of Q
        # values; without the bounds and padding logic per 8-value row (conv2), im2col ran 2x faster.
        for n in range(g.N):
            src = x + ((n * g.C + c) * g.H + r) * g.W + s
            d = dst + n * g.P * g.Q
            for p in range(g.P):
                for q in range(g.Q):
                    d[p * g.Q + q] = src[p * g.W + q]
        return
    _q_range(g, s, &q0, &q1)
    for n in range(g.N):
        src = x + (n * g.C + c) * g.H * g.W
        for p in range(g.P):
            d = dst + (n * g.P + p) * g.Q
            h = p * g.sh - g.ph + r
            if h < 0 or h >= g.H:
                for q in range(g.Q):
                    d[q] = 0
                continue
            off = h * g.W - g.pw + s
            for q in range(q0):
                d[q] = 0
            if g.sw == 1:  # rows are short (Q ~ 8-24): a loop beats a memcpy call
                for q in range(q0, q1):
                    d[q] = src[off + q]
            else:
                for q in range(q0, q1):
                    d[q] = src[off + q * g.sw]
            for q in range(q1, g.Q):
                d[q] = 0


cdef void _col2im_plane(floating* dx, const floating* col, Py_ssize_t n, Py_ssize_t c,
                        const Geom* g) noexcept nogil:
    # dx[n, c] (H, W) = sum over (r, s, p, q) of col rows (c, r, s): the adjoint of _im2col_row
    cdef Py_ssize_t NPQ = g.N * g.P * g.Q, r, s, p, q, h, off, q0, q1
    cdef const floating* src
    memset(dx, 0, g.H * g.W * sizeof(floating))
    if g.ph == 0 and g.pw == 0 and g.sh == 1 and g.sw == 1:
        # No padding, stride 1 (LeNet): no bounds per row; the same additions in the same order.
        for r in range(g.R):
            for s in range(g.S):
                src = col + ((c * g.R + r) * g.S + s) * NPQ + n * g.P * g.Q
                for p in range(g.P):
                    for q in range(g.Q):
                        dx[(p + r) * g.W + s + q] += src[p * g.Q + q]
        return
    for r in range(g.R):
        for s in range(g.S):
            _q_range(g, s, &q0, &q1)
            for p in range(g.P):
                h = p * g.sh - g.ph + r
                if h < 0 or h >= g.H:
                    continue
                src = col + ((c * g.R + r) * g.S + s) * NPQ + (n * g.P + p) * g.Q
                off = h * g.W - g.pw + s
                if g.sw == 1:
                    for q in range(q0, q1):
                        dx[off + q] += src[q]
                else:
                    for q in range(q0, q1):
                        dx[off + q * g.sw] += src[q]


cdef extern from *:
    """
    /* 8 independent partial sums (lane j adds a[j], a[j + 8], ...; the tail goes to lane 0), then
     * a fixed tree: vectorises without -ffast-math and halves rounding error. Written with an
     * explicit 8-lane vector because gcc's own vectorisation of the same loop in Cython's
     * output kept the lanes apart in scalar adds and shuffles (conv1's bias gradient took a
     * third as long as its dW). Same sums, same order, so the same bits. */
    #define FASTNN_SUM8(NAME, T)                                                        \
    static inline T NAME(const T *a, Py_ssize_t n) {                                    \
        typedef T v8 __attribute__((vector_size(8 * sizeof(T))));                      \
        v8 acc = {0}, v;                                                                 \
        Py_ssize_t i, n8 = n - n % 8;                                                    \
        for (i = 0; i < n8; i += 8) {                                                    \
            memcpy(&v, a + i, sizeof v);                                                 \
            acc += v;                                                                    \
        }                                                                                \
        for (i = n8; i < n; i++)                                                         \
            acc[0] += a[i];                                                              \
        return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])); \
    }
    FASTNN_SUM8(fastnn_sum8_f, float)
    FASTNN_SUM8(fastnn_sum8_d, double)
    """
    float fastnn_sum8_f(const float* a, Py_ssize_t n) nogil
    double fastnn_sum8_d(const double* a, Py_ssize_t n) nogil


cdef inline floating _sum(const floating* a, Py_ssize_t n) noexcept nogil:
    if floating is float:
        return fastnn_sum8_f(a, n)
    else:
        return fastnn_sum8_d(a, n)
