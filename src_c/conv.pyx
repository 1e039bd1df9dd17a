# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# conv2d kernels. The general path: im2col of the whole batch (prange over col rows), ONE GEMM
# per product (gemm_parallel: single-threaded OpenBLAS blocks over the OpenMP pool), race-free
# prange passes; one big GEMM beats N per-sample GEMMs at LeNet sizes, where a per-sample GEMM
# is too small for OpenBLAS to thread or block well. The direct path (float32, stride 1, no
# padding, Q >= 8; fastnn_direct_conv.h) skips im2col, dcol and col2im altogether: LeNet's
# conv2 forward 1.6x, backward 1.2-1.4x faster (bench/bench_conv.py, group "conv-direct").
from cython cimport floating
from cython.parallel cimport prange
from libc.string cimport memcpy, memset
from _blas cimport gemm_parallel, fastnn_bind_gemm, TRANS, NO_TRANS

include "_bind.pxi"

cdef extern from "fastnn_direct_conv.h" nogil:
    ctypedef struct fastnn_dconv_geom:
        long C, H, W, K, R, S, P, Q
    int FASTNN_DCONV_FWD_KB, FASTNN_DCONV_DW_KB, FASTNN_DCONV_DW_TB
    void fastnn_dconv_forward(const fastnn_dconv_geom* g, float* y, const float* x,
                              const float* w, const float* b, long k0, int kb)
    void fastnn_dconv_dw(const fastnn_dconv_geom* g, float* dw, const float* dy, const float* x,
                         long k0, int kb, long t0, int tb, long n0, long n1, int accumulate)
    void fastnn_dconv_dx(const fastnn_dconv_geom* g, float* dxc, const float* dyn, const float* w,
                         long c)
    int fastnn_dconv_avx2()

# Direct convolution (fastnn_direct_conv.h) for float32, stride 1, no padding, Q >= 8; the
# im2col + GEMM path otherwise. A switch so tests and benchmarks can run both on one input.
cdef bint _direct_enabled = True
# Direct dW sums over samples in chunks whose x and dy fit in L2 (bench/bench_conv.py, "conv-direct").
cdef enum:
    DIRECT_DW_CHUNK_BYTES = 524288
    DIRECT_DW_MIN_SUM = 512

# Elements touched by a pass below which threads cost more than they give (pytorch#144633).
cdef enum:
    PARALLEL_MIN_WORK = 32768

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


cdef inline int _threads(Py_ssize_t work, int num_threads) noexcept nogil:
    return num_threads if work >= PARALLEL_MIN_WORK else 1


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


cdef inline floating _sum(const floating* a, Py_ssize_t n) noexcept nogil:
    # 8 independent partial sums: vectorises without -ffast-math and halves rounding error.
    cdef floating acc[8]
    cdef Py_ssize_t i, j, n8 = n - n % 8
    for j in range(8):
        acc[j] = 0
    for i in range(0, n8, 8):
        for j in range(8):
            acc[j] += a[i + j]
    for i in range(n8, n):
        acc[0] += a[i]
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))


cdef inline bint _direct_ok(const Geom* g) noexcept nogil:
    # Only where the AVX2+FMA build runs: the baseline (SSE2) build of the 8-wide tiles
    # measured 4-40x slower than there, far behind im2col + OpenBLAS.
    return (_direct_enabled and g.sh == 1 and g.sw == 1 and g.ph == 0 and g.pw == 0
            and g.Q >= 8 and fastnn_dconv_avx2())


cdef inline fastnn_dconv_geom _dgeom(const Geom* g) noexcept nogil:
    cdef fastnn_dconv_geom d
    d.C, d.H, d.W, d.K, d.R, d.S, d.P, d.Q = g.C, g.H, g.W, g.K, g.R, g.S, g.P, g.Q
    return d


cdef void _direct_dw(float* dw, const float* dy, const float* x, const Geom* g,
                     int num_threads) noexcept nogil:
    # dw (K, CRS) over tiles of DW_KB filters x DW_TB taps; each thread owns a contiguous range
    # of tiles (disjoint dw entries: no races) and walks the samples in L2-sized chunks, so a
    # tile's sum has the same order whatever the thread count.
    cdef fastnn_dconv_geom dg = _dgeom(g)
    cdef Py_ssize_t CRS = g.C * g.R * g.S, PQ = g.P * g.Q
    cdef Py_ssize_t k_blocks = (g.K + FASTNN_DCONV_DW_KB - 1) // FASTNN_DCONV_DW_KB
    cdef Py_ssize_t t_blocks = (CRS + FASTNN_DCONV_DW_TB - 1) // FASTNN_DCONV_DW_TB
    cdef Py_ssize_t tiles = k_blocks * t_blocks, part, parts, tile, lo, hi, n0, n1, k0, t0
    cdef Py_ssize_t chunk = max(1, DIRECT_DW_CHUNK_BYTES // (4 * (g.C * g.H * g.W + g.K * PQ)))
    parts = _threads(g.K * CRS * PQ * g.N // 8, num_threads)
    for part in prange(parts, schedule='static', num_threads=parts):
        lo = tiles * part // parts
        hi = tiles * (part + 1) // parts
        n0 = 0
        while n0 < g.N:
            n1 = min(g.N, n0 + chunk)
            for tile in range(lo, hi):
                k0 = (tile // t_blocks) * FASTNN_DCONV_DW_KB
                t0 = (tile % t_blocks) * FASTNN_DCONV_DW_TB
                fastnn_dconv_dw(&dg, dw, dy, x, k0, <int>min(g.K - k0, <Py_ssize_t>FASTNN_DCONV_DW_KB),
                                t0, <int>min(CRS - t0, <Py_ssize_t>FASTNN_DCONV_DW_TB), n0, n1, n0 > 0)
            n0 = n1


cdef void conv2d_forward_kernel(floating[:, :, :, ::1] y, const floating[:, :, :, ::1] x,
                                const floating[:, :, :, ::1] w, const floating[::1] b,
                                int stride_h, int stride_w, int pad_h, int pad_w,
                                floating[:, ::1] col, floating[:, ::1] tmp,
                                int num_threads) noexcept nogil:
    # x (N, C, H, W), w (K, C, R, S), b (K,) -> y (N, K, P, Q); col, tmp: see conv.pxd
    cdef Geom g = _geom(x, w, y.shape[2], y.shape[3], stride_h, stride_w, pad_h, pad_w)
    cdef Py_ssize_t CRS = g.C * g.R * g.S, PQ = g.P * g.Q, NPQ = g.N * PQ, row, n, k, i
    cdef floating* yk
    cdef const floating* t
    cdef fastnn_dconv_geom dg
    cdef Py_ssize_t unit, k_blocks
    if floating is float:
        if _direct_ok(&g):
            dg = _dgeom(&g)
            k_blocks = (g.K + FASTNN_DCONV_FWD_KB - 1) // FASTNN_DCONV_FWD_KB
            for unit in prange(g.N * k_blocks, schedule='static',
                               num_threads=_threads(g.K * CRS * PQ * g.N // 8, num_threads)):
                k = (unit % k_blocks) * FASTNN_DCONV_FWD_KB
                fastnn_dconv_forward(&dg, &y[unit // k_blocks, 0, 0, 0],
                                     &x[unit // k_blocks, 0, 0, 0], &w[0, 0, 0, 0], &b[0], k,
                                     <int>min(g.K - k, <Py_ssize_t>FASTNN_DCONV_FWD_KB))
            return
    for row in prange(CRS, schedule='static', num_threads=_threads(CRS * NPQ, num_threads)):
        _im2col_row(&col[row, 0], &x[0, 0, 0, 0], row, &g)
    # tmp (K, NPQ) = w (K, CRS) @ col (CRS, NPQ)
    gemm_parallel(NO_TRANS, NO_TRANS, <int>g.K, <int>NPQ, <int>CRS, <floating>1, &w[0, 0, 0, 0], <int>CRS,
         &col[0, 0], <int>NPQ, <floating>0, &tmp[0, 0], <int>NPQ, num_threads)
    for n in prange(g.N, schedule='static', num_threads=_threads(g.K * NPQ, num_threads)):
        for k in range(g.K):
            yk = &y[n, k, 0, 0]
            t = &tmp[k, n * PQ]
            for i in range(PQ):
                yk[i] = t[i] + b[k]


cdef void conv2d_backward_kernel(floating[:, :, :, ::1] dx, floating[:, :, :, ::1] dw,
                                 floating[::1] db, const floating[:, :, :, ::1] dy,
                                 const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w,
                                 int stride_h, int stride_w, int pad_h, int pad_w,
                                 floating[:, ::1] col, floating[:, ::1] tmp,
                                 floating[:, ::1] dwt, bint need_dx, bint col_ready,
                                 int num_threads) noexcept nogil:
    # dy (N, K, P, Q), x (N, C, H, W), w (K, C, R, S) -> dx (N, C, H, W), dw (K, C, R, S), db (K,)
    cdef Geom g = _geom(x, w, dy.shape[2], dy.shape[3], stride_h, stride_w, pad_h, pad_w)
    cdef Py_ssize_t CRS = g.C * g.R * g.S, PQ = g.P * g.Q, NPQ = g.N * PQ, row, n, k, nc
    cdef floating* dwp = &dw[0, 0, 0, 0]
    cdef bint direct = False, direct_dw = False
    cdef fastnn_dconv_geom dg
    if floating is float:
        direct = _direct_ok(&g)
        # the direct dW's tiles sum over N*P*Q; below this, their set-up and lane reductions
        # cost more than im2col + OpenBLAS (LeNet conv2: 188 vs 68 us at batch 1, 398 vs 420 at 8)
        direct_dw = direct and NPQ >= DIRECT_DW_MIN_SUM
    if direct:
        col_ready = False  # the direct forward did not fill col
    if direct_dw:
        for k in prange(g.K, schedule='static', num_threads=_threads(g.K * NPQ, num_threads)):
            db[k] = 0
            for n in range(g.N):
                db[k] += _sum(&dy[n, k, 0, 0], PQ)
        if floating is float:
            _direct_dw(&dw[0, 0, 0, 0], &dy[0, 0, 0, 0], &x[0, 0, 0, 0], &g, num_threads)
    else:
        if not col_ready:
            for row in prange(CRS, schedule='static', num_threads=_threads(CRS * NPQ, num_threads)):
                _im2col_row(&col[row, 0], &x[0, 0, 0, 0], row, &g)
        # tmp (K, NPQ) = dy as (K, N*P*Q); db[k] = its row sum
        for k in prange(g.K, schedule='static', num_threads=_threads(g.K * NPQ, num_threads)):
            db[k] = 0
            for n in range(g.N):
                memcpy(&tmp[k, n * PQ], &dy[n, k, 0, 0], PQ * sizeof(floating))
                db[k] += _sum(&dy[n, k, 0, 0], PQ)
        # dwt (CRS, K) = col (CRS, NPQ) @ tmp^T (NPQ, K), then dw = dwt^T: OpenBLAS runs this
        # orientation ~25% faster than dw = tmp @ col^T (bench/bench_conv.py, both thread counts).
        gemm_parallel(NO_TRANS, TRANS, <int>CRS, <int>g.K, <int>NPQ, <floating>1, &col[0, 0], <int>NPQ,
             &tmp[0, 0], <int>NPQ, <floating>0, &dwt[0, 0], <int>g.K, num_threads)
        for k in range(g.K):
            for row in range(CRS):
                dwp[k * CRS + row] = dwt[row, k]
    if not need_dx:
        return
    if floating is float:
        if direct:
            # The transposed convolution as a register-tiled scatter, one (n, c) plane of dx per
            # call (fastnn_direct_conv.h): no 8 MB dcol to write and zero, no col2im pass.
            dg = _dgeom(&g)
            for nc in prange(g.N * g.C, schedule='static',
                             num_threads=_threads(g.K * CRS * NPQ // 8, num_threads)):
                fastnn_dconv_dx(&dg, &dx[nc // g.C, nc % g.C, 0, 0], &dy[nc // g.C, 0, 0, 0],
                                &w[0, 0, 0, 0], nc % g.C)
            return
    # col := dcol (CRS, NPQ) = w^T (CRS, K) @ tmp (K, NPQ); col's im2col is no longer needed
    gemm_parallel(TRANS, NO_TRANS, <int>CRS, <int>NPQ, <int>g.K, <floating>1, &w[0, 0, 0, 0], <int>CRS,
         &tmp[0, 0], <int>NPQ, <floating>0, &col[0, 0], <int>NPQ, num_threads)
    # Each (n, c) plane of dx is written by exactly one thread: no races, no atomics.
    for nc in prange(g.N * g.C, schedule='static', num_threads=_threads(CRS * NPQ, num_threads)):
        _col2im_plane(&dx[nc // g.C, nc % g.C, 0, 0], &col[0, 0], nc // g.C, nc % g.C, &g)


cdef tuple _shape(Py_ssize_t* shape, int ndim):
    return tuple([shape[i] for i in range(ndim)])


cdef _check_sizes(str op, x, w, y, col, tmp, int sh, int sw, int ph, int pw):
    # Cheap last guard of the raw entry points against out-of-bounds access (a few compares per
    # call); fastnn.ops gives the friendly messages. Arguments are shape tuples.
    if sh < 1 or sw < 1 or ph < 0 or pw < 0:
        raise ValueError(f"{op}: stride must be >= 1 and padding >= 0, got stride=({sh}, {sw}) "
                         f"padding=({ph}, {pw})")
    n, c, h, wd = x
    k, r, s = w[0], w[2], w[3]
    p, q = (h + 2 * ph - r) // sh + 1, (wd + 2 * pw - s) // sw + 1
    if w[1] != c or p < 1 or q < 1 or y != (n, k, p, q) \
            or col != (c * r * s, n * p * q) or tmp != (k, n * p * q):
        raise ValueError(f"{op}: inconsistent sizes: x {x}, w {w}, output {y}, "
                         f"col {col}, tmp {tmp}; expected output {(n, k, p, q)}, "
                         f"col {(c * r * s, n * p * q)}, tmp {(k, n * p * q)}")


def conv2d_forward(floating[:, :, :, ::1] y, const floating[:, :, :, ::1] x,
                   const floating[:, :, :, ::1] w, const floating[::1] b,
                   int stride_h, int stride_w, int pad_h, int pad_w,
                   floating[:, ::1] col, floating[:, ::1] tmp, int num_threads):
    """y (N, K, P, Q) = conv(x (N, C, H, W), w (K, C, R, S)) + b (K,).

    col, tmp: scratch from fastnn.ops.conv2d_workspace (see conv.pxd). The im2col path leaves
    im2col(x) in col; the direct path (see conv.pxd) does not touch col or tmp.
    """
    _check_sizes("conv2d_forward", _shape(x.shape, 4), _shape(w.shape, 4), _shape(y.shape, 4),
                 _shape(col.shape, 2), _shape(tmp.shape, 2), stride_h, stride_w, pad_h, pad_w)
    if b.shape[0] != w.shape[0]:
        raise ValueError(f"conv2d_forward: b has {b.shape[0]} entries, w has {w.shape[0]} filters")
    with nogil:
        conv2d_forward_kernel(y, x, w, b, stride_h, stride_w, pad_h, pad_w, col, tmp,
                              max(num_threads, 1))


def conv2d_backward(dx, floating[:, :, :, ::1] dw, floating[::1] db,
                    const floating[:, :, :, ::1] dy, const floating[:, :, :, ::1] x,
                    const floating[:, :, :, ::1] w, int stride_h, int stride_w,
                    int pad_h, int pad_w, floating[:, ::1] col, floating[:, ::1] tmp,
                    floating[:, ::1] dwt, int num_threads, bint col_ready=False):
    """Overwrites dx, dw, db. dx may be None when the layer is first (skips the dX GEMM and col2im).

    col, tmp, dwt: scratch from fastnn.ops.conv2d_workspace (see conv.pxd). col_ready=True skips
    im2col: only when col still holds what conv2d_forward left for this same x, stride, padding
    (the direct path, which leaves nothing there, ignores it).
    """
    # dx is untyped so that None cannot steer the float32/float64 dispatch.
    cdef bint need_dx = dx is not None
    cdef floating[:, :, :, ::1] dxv = dx if need_dx else None
    _check_sizes("conv2d_backward", _shape(x.shape, 4), _shape(w.shape, 4), _shape(dy.shape, 4),
                 _shape(col.shape, 2), _shape(tmp.shape, 2), stride_h, stride_w, pad_h, pad_w)
    if _shape(dw.shape, 4) != _shape(w.shape, 4) or db.shape[0] != w.shape[0] \
            or (need_dx and _shape(dxv.shape, 4) != _shape(x.shape, 4)) \
            or _shape(dwt.shape, 2) != (col.shape[0], w.shape[0]):
        raise ValueError(f"conv2d_backward: dx, dw, db, dwt must have shapes x {_shape(x.shape, 4)}, "
                         f"w {_shape(w.shape, 4)}, ({w.shape[0]},), ({col.shape[0]}, {w.shape[0]})")
    with nogil:
        conv2d_backward_kernel(dxv, dw, db, dy, x, w, stride_h, stride_w, pad_h, pad_w, col, tmp,
                               dwt, need_dx, col_ready, max(num_threads, 1))


def set_direct(bint enabled):
    """Use direct convolution where it applies (the default) or always im2col + GEMM; returns
    the previous setting. For tests and benchmarks that compare the two paths; not between a
    forward and the backward that passes col_ready=True for it."""
    global _direct_enabled
    previous = _direct_enabled
    _direct_enabled = enabled
    return previous


def direct_simd():
    """'avx2+fma' when fastnn_direct_conv.h runs its 8-wide FMA build on this CPU, else 'baseline'."""
    return "avx2+fma" if fastnn_dconv_avx2() else "baseline"
