# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# conv2d kernels. Each op is a dispatch (conv2d_forward_algo, conv2d_backward_plan: the one
# place an algorithm is chosen) over named pieces, each fast piece beside the plain one it must
# equal (tests/test_conv_direct.py holds them equal).
# The plain path: im2col of the whole batch (prange over col rows), ONE GEMM per product
# (gemm_parallel: single-threaded OpenBLAS blocks over the OpenMP pool), race-free prange
# passes; one big GEMM beats N per-sample GEMMs at LeNet sizes, where a per-sample GEMM is too
# small for OpenBLAS to thread or block well. The direct path (float32, stride 1, no padding,
# Q >= 8; fastnn_direct_conv.h) skips im2col, dcol and col2im altogether: LeNet's conv2
# forward 1.6x, backward 1.2-1.4x faster (bench/bench_conv.py, group "conv-direct").
from cython cimport floating
from cython.parallel cimport prange
from libc.string cimport memcpy, memset
from _blas cimport gemm_parallel, fastnn_bind_gemm, TRANS, NO_TRANS
from _options cimport DxMode, DX_SKIP, DX_COMPUTE
from _parallel cimport threads_for
from _cpu cimport fastnn_isa, fastnn_isa_name, fastnn_isa_simd_name

include "_bind.pxi"

cdef extern from "fastnn_direct_conv.h" nogil:
    ctypedef struct fastnn_dconv_geom:
        long C, H, W, K, R, S, P, Q
    int FASTNN_DCONV_FWD_KB, FASTNN_DCONV_DW_KB, FASTNN_DCONV_DW_TB
    int FASTNN_DCONV_DW_STORE, FASTNN_DCONV_DW_ADD
    void fastnn_dconv_forward(const fastnn_dconv_geom* g, float* y, const float* x,
                              const float* w, const float* b, long k0, int kb)
    void fastnn_dconv_dw(const fastnn_dconv_geom* g, float* dw, const float* dy, const float* x,
                         long k0, int kb, long t0, int tb, long n0, long n1, int accumulate)
    void fastnn_dconv_dx(const fastnn_dconv_geom* g, float* dxc, const float* dyn, const float* w,
                         long c)
    int fastnn_dconv_vector()
    int fastnn_dconv_isa(const fastnn_dconv_geom* g, int piece)
    int FASTNN_DCONV_PIECE_FWD, FASTNN_DCONV_PIECE_DW, FASTNN_DCONV_PIECE_DX

cdef enum:
    # Direct dW sums over samples in chunks whose x and dy fit in L2 (bench/bench_conv.py, "conv-direct").
    DIRECT_DW_CHUNK_BYTES = 524288
    # The direct dW's tiles sum over N*P*Q; below this, their set-up and lane reductions cost
    # more than im2col + OpenBLAS (LeNet conv2: 188 vs 68 us at batch 1, 398 vs 420 at 8).
    DIRECT_DW_MIN_SUM = 512

include "conv_im2col.pxi"


# -- the dispatch: which algorithm computes each piece (docs/kernels.md states these rules) --
cdef inline bint _direct_applies(const Geom* g, bint float32) noexcept nogil:
    # Only where a vector build runs (AVX2+FMA or AVX-512; FASTNN_ISA=baseline turns it off):
    # the baseline (SSE2) build of the 8-wide tiles measured 4-40x slower than AVX2, far
    # behind im2col + OpenBLAS.
    return (float32 and g.sh == 1 and g.sw == 1 and g.ph == 0 and g.pw == 0 and g.Q >= 8
            and fastnn_dconv_vector())


cdef ConvAlgo conv2d_forward_algo(const Geom* g, bint float32, ConvPaths paths) noexcept nogil:
    if paths == FAST_PATHS and _direct_applies(g, float32):
        return ALGO_DIRECT
    return ALGO_IM2COL


cdef struct BackwardPlan:
    ConvAlgo dw        # ALGO_DIRECT or ALGO_IM2COL
    ConvAlgo dx        # ALGO_DIRECT, ALGO_IM2COL (reads the tmp that the GEMM dW fills) or ALGO_NONE
    ColState col       # COL_FROM_FORWARD: the GEMM dW may skip im2col


cdef BackwardPlan conv2d_backward_plan(const Geom* g, bint float32, ConvPaths paths,
                                       DxMode dx_mode, ColState col_state) noexcept nogil:
    cdef BackwardPlan plan
    cdef bint direct = paths == FAST_PATHS and _direct_applies(g, float32)
    plan.dw = ALGO_DIRECT if direct and g.N * g.P * g.Q >= DIRECT_DW_MIN_SUM else ALGO_IM2COL
    # The direct dX reads only dy and w, so it pairs with either dW; col2im's dX reads the tmp
    # that the GEMM dW fills, and runs only where direct is False, so dW is ALGO_IM2COL too.
    plan.dx = ALGO_NONE if dx_mode == DX_SKIP else (ALGO_DIRECT if direct else ALGO_IM2COL)
    # Where the forward may have run direct, col was never filled, whatever the caller says.
    plan.col = COL_RECOMPUTE if _direct_applies(g, float32) else col_state
    return plan


# -- forward pieces: y (N, K, P, Q) = conv(x, w) + b --
cdef inline fastnn_dconv_geom _dgeom(const Geom* g) noexcept nogil:
    cdef fastnn_dconv_geom d
    d.C, d.H, d.W, d.K, d.R, d.S, d.P, d.Q = g.C, g.H, g.W, g.K, g.R, g.S, g.P, g.Q
    return d


cdef void _forward_direct(float* y, const float* x, const float* w, const float* b, const Geom* g,
                          int num_threads) noexcept nogil:
    # One unit = one sample x FWD_KB filters, written by one thread (fastnn_direct_conv.h).
    cdef fastnn_dconv_geom dg = _dgeom(g)
    cdef Py_ssize_t k_blocks = (g.K + FASTNN_DCONV_FWD_KB - 1) // FASTNN_DCONV_FWD_KB, unit, n, k
    cdef Py_ssize_t CRS = g.C * g.R * g.S, PQ = g.P * g.Q
    for unit in prange(g.N * k_blocks, schedule='static',
                       num_threads=threads_for(g.K * CRS * PQ * g.N // 8, num_threads)):
        n = unit // k_blocks
        k = (unit % k_blocks) * FASTNN_DCONV_FWD_KB
        fastnn_dconv_forward(&dg, y + n * g.K * PQ, x + n * g.C * g.H * g.W, w, b, k,
                             <int>min(g.K - k, <Py_ssize_t>FASTNN_DCONV_FWD_KB))


cdef void _im2col(floating* col, const floating* x, const Geom* g, int num_threads) noexcept nogil:
    # col (CRS, NPQ) = im2col(x), one row per iteration
    cdef Py_ssize_t CRS = g.C * g.R * g.S, NPQ = g.N * g.P * g.Q, row
    for row in prange(CRS, schedule='static', num_threads=threads_for(CRS * NPQ, num_threads)):
        _im2col_row(col + row * NPQ, x, row, g)


cdef void _forward_im2col(floating* y, const floating* x, const floating* w, const floating* b,
                          const Geom* g, floating* col, floating* tmp, int num_threads) noexcept nogil:
    # Leaves im2col(x) in col (a backward given COL_FROM_FORWARD reuses it).
    cdef Py_ssize_t CRS = g.C * g.R * g.S, PQ = g.P * g.Q, NPQ = g.N * PQ, n, k, i
    cdef floating* yk
    cdef const floating* t
    _im2col(col, x, g, num_threads)
    # tmp (K, NPQ) = w (K, CRS) @ col (CRS, NPQ)
    gemm_parallel(NO_TRANS, NO_TRANS, <int>g.K, <int>NPQ, <int>CRS, <floating>1, w, <int>CRS,
                  col, <int>NPQ, <floating>0, tmp, <int>NPQ, num_threads)
    for n in prange(g.N, schedule='static', num_threads=threads_for(g.K * NPQ, num_threads)):
        for k in range(g.K):
            yk = y + (n * g.K + k) * PQ
            t = tmp + k * NPQ + n * PQ
            for i in range(PQ):
                yk[i] = t[i] + b[k]


# -- backward pieces: db, dw (K, C, R, S), dx (N, C, H, W) from dy (N, K, P, Q) --
cdef void _bias_grad(floating* db, floating* tmp, const floating* dy, const Geom* g,
                     int num_threads) noexcept nogil:
    # db[k] = sum of dy[:, k]; with tmp (not NULL), also tmp (K, NPQ) = dy as (K, N*P*Q), in
    # the same pass over dy
    cdef Py_ssize_t PQ = g.P * g.Q, NPQ = g.N * PQ, k, n
    for k in prange(g.K, schedule='static', num_threads=threads_for(g.K * NPQ, num_threads)):
        db[k] = 0
        for n in range(g.N):
            if tmp != NULL:
                memcpy(tmp + k * NPQ + n * PQ, dy + (n * g.K + k) * PQ, PQ * sizeof(floating))
            db[k] += _sum(dy + (n * g.K + k) * PQ, PQ)


cdef void _dw_direct(float* dw, const float* dy, const float* x, const Geom* g,
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
    # Chunks of equal size: every chunk costs each tile its set-up and lane sums, so 64 samples
    # in chunks of at most 21 run as 16 x 4, not 21 + 21 + 21 + 1.
    cdef Py_ssize_t chunks = (g.N + chunk - 1) // chunk
    chunk = (g.N + chunks - 1) // chunks
    parts = threads_for(g.K * CRS * PQ * g.N // 8, num_threads)
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
                                t0, <int>min(CRS - t0, <Py_ssize_t>FASTNN_DCONV_DW_TB), n0, n1,
                                FASTNN_DCONV_DW_ADD if n0 > 0 else FASTNN_DCONV_DW_STORE)
            n0 = n1


cdef void _dw_gemm(floating* dw, const floating* col, const floating* tmp, floating* dwt,
                   const Geom* g, int num_threads) noexcept nogil:
    # dwt (CRS, K) = col (CRS, NPQ) @ tmp^T (NPQ, K), then dw = dwt^T: OpenBLAS runs this
    # orientation ~25% faster than dw = tmp @ col^T (bench/bench_conv.py, both thread counts).
    cdef Py_ssize_t CRS = g.C * g.R * g.S, NPQ = g.N * g.P * g.Q, k, row
    gemm_parallel(NO_TRANS, TRANS, <int>CRS, <int>g.K, <int>NPQ, <floating>1, col, <int>NPQ,
                  tmp, <int>NPQ, <floating>0, dwt, <int>g.K, num_threads)
    for k in range(g.K):
        for row in range(CRS):
            dw[k * CRS + row] = dwt[row * g.K + k]


cdef void _dx_direct(float* dx, const float* dy, const float* w, const Geom* g,
                     int num_threads) noexcept nogil:
    # The transposed convolution as a register-tiled scatter, one (n, c) plane of dx per call
    # (fastnn_direct_conv.h): no dcol to write and zero, no col2im pass.
    cdef fastnn_dconv_geom dg = _dgeom(g)
    cdef Py_ssize_t CRS = g.C * g.R * g.S, NPQ = g.N * g.P * g.Q, nc
    for nc in prange(g.N * g.C, schedule='static',
                     num_threads=threads_for(g.K * CRS * NPQ // 8, num_threads)):
        fastnn_dconv_dx(&dg, dx + nc * g.H * g.W, dy + (nc // g.C) * g.K * g.P * g.Q, w, nc % g.C)


cdef void _dx_col2im(floating* dx, const floating* w, const floating* tmp, floating* col,
                     const Geom* g, int num_threads) noexcept nogil:
    # col := dcol (CRS, NPQ) = w^T (CRS, K) @ tmp (K, NPQ), tmp being dy as _bias_grad laid it
    # out; col's im2col is no longer needed. Each (n, c) plane of dx is written by exactly one
    # thread: no races, no atomics.
    cdef Py_ssize_t CRS = g.C * g.R * g.S, NPQ = g.N * g.P * g.Q, nc
    gemm_parallel(TRANS, NO_TRANS, <int>CRS, <int>NPQ, <int>g.K, <floating>1, w, <int>CRS,
                  tmp, <int>NPQ, <floating>0, col, <int>NPQ, num_threads)
    for nc in prange(g.N * g.C, schedule='static', num_threads=threads_for(CRS * NPQ, num_threads)):
        _col2im_plane(dx + nc * g.H * g.W, col, nc // g.C, nc % g.C, g)


# -- the ops: dispatch, then the chosen pieces --
cdef void conv2d_forward_kernel(floating[:, :, :, ::1] y, const floating[:, :, :, ::1] x,
                                const floating[:, :, :, ::1] w, const floating[::1] b,
                                int stride_h, int stride_w, int pad_h, int pad_w,
                                floating[:, ::1] col, floating[:, ::1] tmp,
                                ConvPaths paths, int num_threads) noexcept nogil:
    # x (N, C, H, W), w (K, C, R, S), b (K,) -> y (N, K, P, Q); col, tmp: see conv.pxd
    cdef Geom g = _geom(x, w, y.shape[2], y.shape[3], stride_h, stride_w, pad_h, pad_w)
    cdef ConvAlgo algo = conv2d_forward_algo(&g, sizeof(floating) == sizeof(float), paths)
    if floating is float:
        if algo == ALGO_DIRECT:
            _forward_direct(&y[0, 0, 0, 0], &x[0, 0, 0, 0], &w[0, 0, 0, 0], &b[0], &g, num_threads)
            return
    _forward_im2col(&y[0, 0, 0, 0], &x[0, 0, 0, 0], &w[0, 0, 0, 0], &b[0], &g, &col[0, 0],
                    &tmp[0, 0], num_threads)


cdef void conv2d_backward_kernel(floating[:, :, :, ::1] dx, floating[:, :, :, ::1] dw,
                                 floating[::1] db, const floating[:, :, :, ::1] dy,
                                 const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] w,
                                 int stride_h, int stride_w, int pad_h, int pad_w,
                                 floating[:, ::1] col, floating[:, ::1] tmp,
                                 floating[:, ::1] dwt, DxMode dx_mode, ColState col_state,
                                 ConvPaths paths, int num_threads) noexcept nogil:
    # dy (N, K, P, Q), x (N, C, H, W), w (K, C, R, S) -> dx (N, C, H, W), dw (K, C, R, S), db (K,)
    cdef Geom g = _geom(x, w, dy.shape[2], dy.shape[3], stride_h, stride_w, pad_h, pad_w)
    cdef BackwardPlan plan = conv2d_backward_plan(&g, sizeof(floating) == sizeof(float), paths,
                                                  dx_mode, col_state)
    if plan.dw == ALGO_DIRECT:
        _bias_grad(&db[0], NULL, &dy[0, 0, 0, 0], &g, num_threads)
        if floating is float:
            _dw_direct(&dw[0, 0, 0, 0], &dy[0, 0, 0, 0], &x[0, 0, 0, 0], &g, num_threads)
    else:
        if plan.col == COL_RECOMPUTE:
            _im2col(&col[0, 0], &x[0, 0, 0, 0], &g, num_threads)
        _bias_grad(&db[0], &tmp[0, 0], &dy[0, 0, 0, 0], &g, num_threads)
        _dw_gemm(&dw[0, 0, 0, 0], &col[0, 0], &tmp[0, 0], &dwt[0, 0], &g, num_threads)
    if plan.dx == ALGO_DIRECT:
        if floating is float:
            _dx_direct(&dx[0, 0, 0, 0], &dy[0, 0, 0, 0], &w[0, 0, 0, 0], &g, num_threads)
    elif plan.dx == ALGO_IM2COL:
        _dx_col2im(&dx[0, 0, 0, 0], &w[0, 0, 0, 0], &tmp[0, 0], &col[0, 0], &g, num_threads)


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


cdef _check_options(str op, int paths, int col_state):
    if paths != FAST_PATHS and paths != PLAIN_PATH:
        raise ValueError(f"{op}: paths must be ConvPaths.FAST_PATHS ({FAST_PATHS}) or "
                         f"ConvPaths.PLAIN_PATH ({PLAIN_PATH}), got {paths}")
    if col_state != COL_RECOMPUTE and col_state != COL_FROM_FORWARD:
        raise ValueError(f"{op}: col_state must be ColState.COL_RECOMPUTE ({COL_RECOMPUTE}) or "
                         f"ColState.COL_FROM_FORWARD ({COL_FROM_FORWARD}), got {col_state}")


def conv2d_forward(floating[:, :, :, ::1] y, const floating[:, :, :, ::1] x,
                   const floating[:, :, :, ::1] w, const floating[::1] b,
                   int stride_h, int stride_w, int pad_h, int pad_w,
                   floating[:, ::1] col, floating[:, ::1] tmp, int num_threads,
                   int paths=FAST_PATHS):
    """y (N, K, P, Q) = conv(x (N, C, H, W), w (K, C, R, S)) + b (K,).

    col, tmp: scratch from fastnn.ops.conv2d_workspace (see conv.pxd). The im2col algorithm
    leaves im2col(x) in col; the direct one does not touch col or tmp. paths: FAST_PATHS (the
    default) or PLAIN_PATH (im2col + GEMM only, the reference the fast paths must equal).
    """
    _check_sizes("conv2d_forward", _shape(x.shape, 4), _shape(w.shape, 4), _shape(y.shape, 4),
                 _shape(col.shape, 2), _shape(tmp.shape, 2), stride_h, stride_w, pad_h, pad_w)
    _check_options("conv2d_forward", paths, COL_RECOMPUTE)
    if b.shape[0] != w.shape[0]:
        raise ValueError(f"conv2d_forward: b has {b.shape[0]} entries, w has {w.shape[0]} filters")
    with nogil:
        conv2d_forward_kernel(y, x, w, b, stride_h, stride_w, pad_h, pad_w, col, tmp,
                              <ConvPaths>paths, max(num_threads, 1))


def conv2d_backward(dx, floating[:, :, :, ::1] dw, floating[::1] db,
                    const floating[:, :, :, ::1] dy, const floating[:, :, :, ::1] x,
                    const floating[:, :, :, ::1] w, int stride_h, int stride_w,
                    int pad_h, int pad_w, floating[:, ::1] col, floating[:, ::1] tmp,
                    floating[:, ::1] dwt, int num_threads, int col_state=COL_RECOMPUTE,
                    int paths=FAST_PATHS):
    """Overwrites dx, dw, db. dx may be None when the layer is first (no dX is computed).

    col, tmp, dwt: scratch from fastnn.ops.conv2d_workspace (see conv.pxd). col_state:
    COL_FROM_FORWARD skips im2col when col still holds what conv2d_forward left for this same
    x, stride and padding (ignored where the forward may have run direct and left nothing);
    COL_RECOMPUTE (the default) otherwise. paths: as conv2d_forward's.
    """
    # dx is untyped so that None cannot steer the float32/float64 dispatch.
    cdef DxMode dx_mode = DX_SKIP if dx is None else DX_COMPUTE
    cdef floating[:, :, :, ::1] dxv = None if dx is None else dx
    _check_sizes("conv2d_backward", _shape(x.shape, 4), _shape(w.shape, 4), _shape(dy.shape, 4),
                 _shape(col.shape, 2), _shape(tmp.shape, 2), stride_h, stride_w, pad_h, pad_w)
    _check_options("conv2d_backward", paths, col_state)
    if _shape(dw.shape, 4) != _shape(w.shape, 4) or db.shape[0] != w.shape[0] \
            or (dx_mode == DX_COMPUTE and _shape(dxv.shape, 4) != _shape(x.shape, 4)) \
            or _shape(dwt.shape, 2) != (col.shape[0], w.shape[0]):
        raise ValueError(f"conv2d_backward: dx, dw, db, dwt must have shapes x {_shape(x.shape, 4)}, "
                         f"w {_shape(w.shape, 4)}, ({w.shape[0]},), ({col.shape[0]}, {w.shape[0]})")
    with nogil:
        conv2d_backward_kernel(dxv, dw, db, dy, x, w, stride_h, stride_w, pad_h, pad_w, col, tmp,
                               dwt, dx_mode, <ColState>col_state, <ConvPaths>paths,
                               max(num_threads, 1))


_ALGO_NAMES = {ALGO_NONE: None, ALGO_IM2COL: "im2col", ALGO_DIRECT: "direct"}


def conv2d_algorithms(x_shape, w_shape, stride, padding, str dtype, *, need_dx=True,
                      int paths=FAST_PATHS):
    """{"forward", "dw", "dx": "direct", "im2col" or None} that the kernels run for x of x_shape,
    w of w_shape, (stride_h, stride_w), (pad_h, pad_w) and dtype "float32" or "float64": the
    same dispatch functions the kernels call (for fastnn.ops.conv2d_algorithms and tests)."""
    _check_options("conv2d_algorithms", paths, COL_RECOMPUTE)
    cdef Geom g
    g.N, g.C, g.H, g.W = x_shape
    g.K, _, g.R, g.S = w_shape
    (g.sh, g.sw), (g.ph, g.pw) = stride, padding
    g.P, g.Q = (g.H + 2 * g.ph - g.R) // g.sh + 1, (g.W + 2 * g.pw - g.S) // g.sw + 1
    cdef bint float32 = dtype == "float32"
    cdef BackwardPlan plan = conv2d_backward_plan(&g, float32, <ConvPaths>paths,
                                                  DX_COMPUTE if need_dx else DX_SKIP, COL_RECOMPUTE)
    return {"forward": _ALGO_NAMES[conv2d_forward_algo(&g, float32, <ConvPaths>paths)],
            "dw": _ALGO_NAMES[plan.dw], "dx": _ALGO_NAMES[plan.dx]}


def direct_simd():
    """The widest build fastnn_direct_conv.h runs here: 'avx512f+fma' (16 lanes, rows of >= 16
    columns), 'avx2+fma' (8 lanes) or 'baseline' (then conv2d never picks the direct kernels)."""
    cdef fastnn_dconv_geom wide
    wide.C = wide.H = wide.W = wide.K = wide.R = wide.S = wide.P = wide.Q = 16
    cdef int isa = max(fastnn_dconv_isa(&wide, FASTNN_DCONV_PIECE_FWD),
                       fastnn_dconv_isa(&wide, FASTNN_DCONV_PIECE_DW),
                       fastnn_dconv_isa(&wide, FASTNN_DCONV_PIECE_DX))
    return fastnn_isa_simd_name(isa).decode()


def direct_isa(x_shape, w_shape):
    """{"forward", "dw", "dx": 'avx512', 'avx2' or 'baseline'}: the build of each direct piece
    for x of x_shape and w of w_shape at stride 1, no padding (whether conv2d picks the direct
    algorithm at all is conv2d_algorithms' answer)."""
    cdef fastnn_dconv_geom d
    _, d.C, d.H, d.W = x_shape
    d.K, _, d.R, d.S = w_shape
    d.P, d.Q = d.H - d.R + 1, d.W - d.S + 1
    return {"forward": fastnn_isa_name(fastnn_dconv_isa(&d, FASTNN_DCONV_PIECE_FWD)).decode(),
            "dw": fastnn_isa_name(fastnn_dconv_isa(&d, FASTNN_DCONV_PIECE_DW)).decode(),
            "dx": fastnn_isa_name(fastnn_dconv_isa(&d, FASTNN_DCONV_PIECE_DX)).decode()}


def isa():
    """This module's level (fastnn_cpu.h): 'avx512', 'avx2' or 'baseline'."""
    return fastnn_isa_name(fastnn_isa()).decode()

