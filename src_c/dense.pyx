# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# Dense layer kernels: one GEMM each way (OpenBLAS blocks split over OpenMP threads), plus one
# pass that adds the bias and applies the activation (fused: one trip over y, one Python call).
from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport uint32_t
from libc.string cimport memcpy
from _blas cimport (gemm_parallel, fastnn_bind_gemm, fastnn_small_gemm_isa, sgemm_by, sgemm_impl,
                    Transpose, TRANS, NO_TRANS, GemmImpl, GEMM_BLAS, GEMM_SMALL)
from _elementwise cimport bias_activate_row, slope_row, ACT_NONE
from _options cimport DxMode, DX_SKIP, DX_COMPUTE
from _parallel cimport threads_for
from _cpu cimport fastnn_isa, fastnn_isa_name, fastnn_isa_simd_name

include "_bind.pxi"

cdef enum Gaps:
    # _scatter_runs: what happens to the columns between the runs
    GAPS_ZERO = 0
    GAPS_KEEP = 1


cdef void dense_forward_kernel(floating[:, ::1] y, const floating[:, ::1] x,
                               const floating[:, ::1] w, const floating[::1] b,
                               int act, int num_threads) noexcept nogil:
    # x (N, I), w (O, I), b (O,) -> y (N, O) = act(x @ w.T + b)
    cdef Py_ssize_t n = x.shape[0], i = x.shape[1], o = w.shape[0]
    gemm_parallel(NO_TRANS, TRANS, <int>n, <int>o, <int>i, <floating>1, &x[0, 0], <int>i,
                  &w[0, 0], <int>i, <floating>0, &y[0, 0], <int>o, num_threads)
    _bias_activate(y, b, act, num_threads)


cdef inline void _bias_activate(floating[:, ::1] y, const floating[::1] b, int act,
                                int num_threads) noexcept nogil:
    # y (N, O) = act(y + b), row by row; a one-thread pass enters no OpenMP region (a region
    # of one thread still costs its set-up, a few per step of a small net)
    cdef Py_ssize_t n = y.shape[0], o = y.shape[1], r
    cdef int threads = threads_for(n * o, num_threads)
    if threads == 1:
        for r in range(n):
            bias_activate_row(&y[r, 0], &b[0], o, act)
        return
    for r in prange(n, schedule='static', num_threads=threads):
        bias_activate_row(&y[r, 0], &b[0], o, act)


cdef inline void _dz(floating[:, ::1] dy, const floating[:, ::1] y, int act,
                     int num_threads) noexcept nogil:
    # dy -> dz = dy * act'(y) in place
    cdef Py_ssize_t n = dy.shape[0], o = dy.shape[1], r
    cdef int threads = threads_for(n * o, num_threads)
    if act == ACT_NONE:
        return
    if threads == 1:  # no OpenMP region, as _bias_activate
        for r in range(n):
            slope_row(&dy[r, 0], &y[r, 0], o, act)
        return
    for r in prange(n, schedule='static', num_threads=threads):
        slope_row(&dy[r, 0], &y[r, 0], o, act)


cdef inline void _dz_and_dx(floating[:, ::1] dx, floating[:, ::1] dy, const floating[:, ::1] w,
                            const floating[:, ::1] y, int act, int dx_mode,
                            int num_threads) noexcept nogil:
    # dz as _dz, then dx = dz @ w (w as it is before any update)
    cdef Py_ssize_t n = dy.shape[0], i = w.shape[1], o = w.shape[0]
    _dz(dy, y, act, num_threads)
    if dx_mode == DX_COMPUTE:
        gemm_parallel(NO_TRANS, NO_TRANS, <int>n, <int>i, <int>o, <floating>1, &dy[0, 0], <int>o,
                      &w[0, 0], <int>i, <floating>0, &dx[0, 0], <int>i, num_threads)


cdef inline void _bias_grad(floating[::1] db, const floating[:, ::1] dz) noexcept nogil:
    # db (O,) = column sums of dz (N, O); row by row: memory order, vectorises over c
    cdef Py_ssize_t n = dz.shape[0], o = dz.shape[1], r, c
    for c in range(o):
        db[c] = 0
    for r in range(n):
        for c in range(o):
            db[c] += dz[r, c]


cdef void dense_backward_kernel(floating[:, ::1] dx, floating[:, ::1] dw, floating[::1] db,
                                floating[:, ::1] dy, const floating[:, ::1] x,
                                const floating[:, ::1] w, const floating[:, ::1] y, int act,
                                int dx_mode, int num_threads) noexcept nogil:
    # dy (N, O), x (N, I), w (O, I), y (N, O) -> dx (N, I), dw (O, I), db (O,)
    # With an activation, dy is first turned in place into dz = dy * act'(y).
    cdef Py_ssize_t n = x.shape[0], i = x.shape[1], o = w.shape[0]
    _dz_and_dx(dx, dy, w, y, act, dx_mode, num_threads)
    gemm_parallel(TRANS, NO_TRANS, <int>o, <int>i, <int>n, <floating>1, &dy[0, 0], <int>o,
                  &x[0, 0], <int>i, <floating>0, &dw[0, 0], <int>i, num_threads)
    _bias_grad(db, dy)


cdef void dense_backward_sgd_kernel(floating[:, ::1] dx, floating[:, ::1] w, floating[::1] b,
                                    floating[::1] db, floating[:, ::1] dy,
                                    const floating[:, ::1] x, const floating[:, ::1] y, int act,
                                    int dx_mode, floating lr, int num_threads) noexcept nogil:
    # dense_backward_kernel followed by plain SGD (w -= lr * dw, b -= lr * db), with the weight
    # step done by the dW GEMM itself (alpha = -lr, beta = 1): no dw written, no second pass
    # over w. The same formula as sgd_update_kernel; db is still written.
    cdef Py_ssize_t n = x.shape[0], i = x.shape[1], o = w.shape[0], c
    _dz_and_dx(dx, dy, w, y, act, dx_mode, num_threads)
    gemm_parallel(TRANS, NO_TRANS, <int>o, <int>i, <int>n, -lr, &dy[0, 0], <int>o,
                  &x[0, 0], <int>i, <floating>1, &w[0, 0], <int>i, num_threads)
    _bias_grad(db, dy)
    for c in range(o):
        b[c] -= lr * db[c]


cdef Py_ssize_t nonzero_column_runs(const float* x, Py_ssize_t rows, Py_ssize_t cols, unsigned int* flags,
                                    int* runs, Py_ssize_t* kept) noexcept nogil:
    # flags[c] = any row has x[r, c] != 0 (NaN and inf count as non-zero; -0.0 adds nothing);
    # returns the number of runs of flagged columns written to runs
    cdef Py_ssize_t r, c, nruns = 0, start
    cdef const uint32_t* xr
    for c in range(cols):
        flags[c] = 0
    for r in range(rows):
        # the bits without the sign: non-zero unless the value is +-0.0 (an integer OR
        # vectorises; the float compare did not)
        xr = <const uint32_t*>(x + r * cols)
        for c in range(cols):
            flags[c] |= xr[c] & 0x7fffffff
    kept[0] = 0
    c = 0
    while c < cols:
        if not flags[c]:
            c += 1
            continue
        start = c
        while c < cols and flags[c]:
            c += 1
        runs[2 * nruns] = <int>start
        runs[2 * nruns + 1] = <int>(c - start)
        kept[0] += c - start
        nruns += 1
    return nruns


cdef bint finite_outside_runs(const float* w, Py_ssize_t rows, Py_ssize_t cols, const int* runs,
                              Py_ssize_t nruns) noexcept nogil:
    # A NaN or inf weight on a skipped column would make the full product NaN; then the caller
    # keeps the full GEMM so the loss shows it, as the layer path does.
    cdef Py_ssize_t r, t, c, gap_start
    cdef const uint32_t* wr
    cdef uint32_t bad = 0
    for r in range(rows):
        wr = <const uint32_t*>(w + r * cols)
        gap_start = 0
        for t in range(nruns + 1):
            for c in range(gap_start, runs[2 * t] if t < nruns else cols):
                bad |= (wr[c] & 0x7f800000) == 0x7f800000  # exponent all ones: inf or NaN
            if t < nruns:
                gap_start = runs[2 * t] + runs[2 * t + 1]
    return bad == 0


cdef void gather_runs(float* dst, const float* src, Py_ssize_t rows, Py_ssize_t cols,
                      const int* runs, Py_ssize_t nruns, Py_ssize_t kept) noexcept nogil:
    # dst (rows, kept) = src (rows, cols)[:, the runs' columns]
    cdef Py_ssize_t r, t, j
    cdef float* d
    cdef const float* s
    for r in range(rows):
        d = dst + r * kept
        for t in range(nruns):
            memcpy(d, src + r * cols + runs[2 * t], runs[2 * t + 1] * sizeof(float))
            d += runs[2 * t + 1]


cdef void _scatter_runs(float* dst, const float* src, Py_ssize_t rows, Py_ssize_t cols,
                        const int* runs, Py_ssize_t nruns, Py_ssize_t kept,
                        Gaps gaps) noexcept nogil:
    # dst (rows, cols)[:, the runs' columns] = src (rows, kept); the other columns are zeroed
    # (GAPS_ZERO) or left alone (GAPS_KEEP)
    cdef Py_ssize_t r, t, j, gap_start
    cdef float* d
    cdef const float* s
    for r in range(rows):
        d = dst + r * cols
        s = src + r * kept
        gap_start = 0
        for t in range(nruns):
            if gaps == GAPS_ZERO:
                for j in range(gap_start, runs[2 * t]):
                    d[j] = 0
            for j in range(runs[2 * t + 1]):
                d[runs[2 * t] + j] = s[j]
            s += runs[2 * t + 1]
            gap_start = runs[2 * t] + runs[2 * t + 1]
        if gaps == GAPS_ZERO:
            for j in range(gap_start, cols):
                d[j] = 0


cdef void dense_forward_compact_kernel(float[:, ::1] y, const float* xc, const float* wc,
                                       Py_ssize_t kept, const float[::1] b, int act,
                                       int num_threads) noexcept nogil:
    # y (N, O) = act(xc (N, kept) @ wc (O, kept).T + b)
    cdef Py_ssize_t n = y.shape[0], o = y.shape[1]
    gemm_parallel(NO_TRANS, TRANS, <int>n, <int>o, <int>kept, <float>1, xc, <int>kept, wc, <int>kept,
                  <float>0, &y[0, 0], <int>o, num_threads)
    _bias_activate(y, b, act, num_threads)


cdef void dense_backward_compact_kernel(float[:, ::1] w, float[::1] b, float[:, ::1] dw,
                                        float[::1] db, float[:, ::1] dy, const float[:, ::1] y,
                                        int act, const float* xc, float* wc, float* dwc,
                                        const int* runs, Py_ssize_t nruns, Py_ssize_t kept,
                                        int dw_mode, float lr, int num_threads) noexcept nogil:
    # The first layer's backward (no dx) on the gathered columns. DW_SGD_STEP: w[:, kept] -= lr * dw
    # through the GEMM on wc (still w's kept columns: w has not changed since the forward), as
    # dense_backward_sgd_kernel does, then b -= lr * db. Otherwise dw = dz.T @ x with zero
    # columns where x was zero.
    cdef Py_ssize_t n = dy.shape[0], o = w.shape[0], i = w.shape[1], c
    _dz(dy, y, act, num_threads)
    if dw_mode == DW_SGD_STEP:
        gemm_parallel(TRANS, NO_TRANS, <int>o, <int>kept, <int>n, -lr, &dy[0, 0], <int>o, xc, <int>kept,
                      <float>1, wc, <int>kept, num_threads)
        _scatter_runs(&w[0, 0], wc, o, i, runs, nruns, kept, GAPS_KEEP)
        _bias_grad(db, dy)
        for c in range(o):
            b[c] -= lr * db[c]
    else:
        gemm_parallel(TRANS, NO_TRANS, <int>o, <int>kept, <int>n, <float>1, &dy[0, 0], <int>o, xc,
                      <int>kept, <float>0, dwc, <int>kept, num_threads)
        _scatter_runs(&dw[0, 0], dwc, o, i, runs, nruns, kept, GAPS_ZERO)
        _bias_grad(db, dy)


def dense_forward(floating[:, ::1] y, const floating[:, ::1] x, const floating[:, ::1] w,
                  const floating[::1] b, int act, int num_threads):
    """act: 0 none, 1 relu, 2 sigmoid, 3 tanh (src_c/_elementwise.pxd)."""
    with nogil:
        dense_forward_kernel(y, x, w, b, act, num_threads)


def dense_backward(dx, floating[:, ::1] dw, floating[::1] db,
                   floating[:, ::1] dy, const floating[:, ::1] x,
                   const floating[:, ::1] w, const floating[:, ::1] y, int act, int num_threads):
    """dx may be None when the layer is first (its input gradient is never needed).
    With act != 0, y is the forward output and dy is overwritten with dy * act'(y)."""
    # dx is untyped so that None cannot steer the float32/float64 dispatch (as in conv.pyx).
    cdef DxMode dx_mode = DX_SKIP if dx is None else DX_COMPUTE
    cdef floating[:, ::1] dxv = None if dx is None else dx
    with nogil:
        dense_backward_kernel(dxv, dw, db, dy, x, w, y, act, dx_mode, num_threads)


_TRANSPOSES = {"N": NO_TRANS, "T": TRANS}
_GEMM_IMPLS = {"small": GEMM_SMALL, "blas": GEMM_BLAS}


cdef Transpose _transpose(str op, str name, value) except *:
    if not isinstance(value, str) or value not in _TRANSPOSES:
        raise ValueError(f"{op}: {name} must be 'N' (as stored) or 'T' (transposed), got {value!r}")
    return _TRANSPOSES[value]


def gemm_choice(op_a, op_b, int m, int n, int k):
    """'small' or 'blas': what a float32 GEMM of these sizes runs (sgemm_impl in _blas.pxd)."""
    impl = sgemm_impl(_transpose("gemm_choice", "op_a", op_a), _transpose("gemm_choice", "op_b", op_b),
                      m, n, k)
    return "small" if impl == GEMM_SMALL else "blas"


def sgemm(op_a, op_b, float alpha, const float[:, ::1] a, const float[:, ::1] b,
          float beta, float[:, ::1] c, str impl="auto"):
    """c = alpha * op_a(a) @ op_b(b) + beta * c, op 'N' or 'T', by impl 'small'
    (fastnn_small_gemm.h), 'blas' (OpenBLAS) or 'auto' (the kernels' choice, gemm_choice):
    for tests and benchmarks that hold the small GEMM equal to OpenBLAS."""
    cdef Transpose ta = _transpose("sgemm", "op_a", op_a), tb = _transpose("sgemm", "op_b", op_b)
    cdef int m = c.shape[0], n = c.shape[1], k = a.shape[0] if ta == TRANS else a.shape[1]
    if (b.shape[1] if tb == TRANS else b.shape[0]) != k or (a.shape[1] if ta == TRANS else a.shape[0]) != m \
            or (b.shape[0] if tb == TRANS else b.shape[1]) != n or min(m, n, k) < 1:
        raise ValueError(f"sgemm: shapes do not chain: a ({a.shape[0]}, {a.shape[1]}), b ({b.shape[0]}, "
                         f"{b.shape[1]}), c ({m}, {n}), op_a={op_a!r}, op_b={op_b!r}")
    if impl not in ("small", "blas", "auto"):
        raise ValueError(f"sgemm: impl must be 'small', 'blas' or 'auto', got {impl!r}")
    cdef GemmImpl chosen = sgemm_impl(ta, tb, m, n, k) if impl == "auto" else _GEMM_IMPLS[impl]
    if chosen == GEMM_SMALL and ta == TRANS and tb == TRANS:
        raise ValueError("sgemm: impl 'small' has no op_a='T' and op_b='T' form")
    with nogil:
        sgemm_by(chosen, ta, tb, m, n, k, alpha, &a[0, 0], a.shape[1], &b[0, 0], b.shape[1], beta,
                 &c[0, 0], n)


def small_gemm_simd():
    """The build fastnn_small_gemm.h runs here: 'avx512f+fma' (16 lanes), 'avx2+fma' (8) or
    'baseline'; 'dot X, axpy Y' when its two loop shapes run different ones."""
    dot, axpy = (fastnn_isa_simd_name(fastnn_small_gemm_isa(dot)).decode() for dot in (1, 0))
    return dot if dot == axpy else f"dot {dot}, axpy {axpy}"


def isa():
    """This module's level (fastnn_cpu.h): 'avx512', 'avx2' or 'baseline'."""
    return fastnn_isa_name(fastnn_isa()).decode()

