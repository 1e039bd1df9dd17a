# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# Pooling kernels: one (n, c) plane per OpenMP iteration, so every write is race-free
# (depool's scatter-add only ever touches its own plane).
from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport int64_t
from libc.string cimport memset
from _parallel cimport threads_for
from _cpu cimport fastnn_isa, fastnn_isa_name

cdef extern from "fastnn_pool2x2.h" nogil:
    void fastnn_maxpool2x2_row(float* y, int64_t* argmax, const float* x, long W, long Q,
                               int64_t offset)
    int fastnn_maxpool2x2_isa(long Q)


cdef inline void _maxpool_plane(floating* y, int64_t* argmax, const floating* xp, Py_ssize_t H,
                                Py_ssize_t W, Py_ssize_t P, Py_ssize_t Q, int kernel_h, int kernel_w,
                                int stride_h, int stride_w) noexcept nogil:
    # One plane: xp (H, W) -> y (P, Q), argmax (P, Q) = h*W + w of the first max
    cdef Py_ssize_t p, q, i, j, at, best_at
    cdef int64_t mask
    cdef floating best, v
    if floating is float:
        if kernel_h == 2 and kernel_w == 2 and stride_h == 2 and stride_w == 2:
            # 8 outputs per vector step (fastnn_pool2x2.h), the same scan semantics as below
            for p in range(P):
                fastnn_maxpool2x2_row(y + p * Q, argmax + p * Q, xp + 2 * p * W, W, Q, 2 * p * W)
            return
    for p in range(P):
        for q in range(Q):
            best_at = p * stride_h * W + q * stride_w
            best = xp[best_at]
            for i in range(kernel_h):
                for j in range(kernel_w):
                    at = (p * stride_h + i) * W + q * stride_w + j
                    v = xp[at]
                    # Strict > keeps the first max; a NaN wins and propagates (PyTorch).
                    # Written as max + bit-mask select so gcc emits no branch: on random
                    # data half the compares mispredict, which made this 2.5x slower.
                    mask = -<int64_t>((v > best) | (v != v))
                    best_at = (at & mask) | (best_at & ~mask)
                    best = v if v > best else best
                    best = v if v != v else best
            y[p * Q + q] = best
            argmax[p * Q + q] = best_at


cdef void maxpool2d_forward_kernel(floating[:, :, :, ::1] y, int64_t[:, :, :, ::1] argmax,
                                   const floating[:, :, :, ::1] x, int kernel_h, int kernel_w,
                                   int stride_h, int stride_w, int num_threads) noexcept nogil:
    # x (N, C, H, W) -> y (N, C, P, Q), argmax (N, C, P, Q) = h*W + w of the first max
    cdef Py_ssize_t planes = x.shape[0] * x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t P = y.shape[2], Q = y.shape[3], pl
    cdef const floating* x0 = &x[0, 0, 0, 0]
    cdef floating* y0 = &y[0, 0, 0, 0]
    cdef int64_t* a0 = &argmax[0, 0, 0, 0]
    num_threads = threads_for(planes * P * Q * kernel_h * kernel_w, num_threads)
    if num_threads == 1:  # no OpenMP region: a region of one thread still costs its set-up
        for pl in range(planes):
            _maxpool_plane(y0 + pl * P * Q, a0 + pl * P * Q, x0 + pl * H * W, H, W, P, Q,
                           kernel_h, kernel_w, stride_h, stride_w)
        return
    for pl in prange(planes, schedule='static', num_threads=num_threads):
        _maxpool_plane(y0 + pl * P * Q, a0 + pl * P * Q, x0 + pl * H * W, H, W, P, Q,
                       kernel_h, kernel_w, stride_h, stride_w)


cdef inline void _depool_plane(floating* op, const floating* vp, const int64_t* ap, Py_ssize_t HW,
                               Py_ssize_t PQ) noexcept nogil:
    cdef Py_ssize_t k
    memset(op, 0, HW * sizeof(floating))
    for k in range(PQ):
        op[ap[k]] += vp[k]


cdef void depool2d_kernel(floating[:, :, :, ::1] out, const floating[:, :, :, ::1] values,
                          const int64_t[:, :, :, ::1] argmax, int num_threads) noexcept nogil:
    # values (N, C, P, Q), argmax (N, C, P, Q) -> out (N, C, H, W), zeroed then scatter-added
    cdef Py_ssize_t planes = out.shape[0] * out.shape[1], HW = out.shape[2] * out.shape[3]
    cdef Py_ssize_t PQ = values.shape[2] * values.shape[3], pl
    cdef floating* o0 = &out[0, 0, 0, 0]
    cdef const floating* v0 = &values[0, 0, 0, 0]
    cdef const int64_t* a0 = &argmax[0, 0, 0, 0]
    num_threads = threads_for(planes * (HW + PQ), num_threads)
    if num_threads == 1:  # no OpenMP region (see maxpool2d_forward_kernel)
        for pl in range(planes):
            _depool_plane(o0 + pl * HW, v0 + pl * PQ, a0 + pl * PQ, HW, PQ)
        return
    for pl in prange(planes, schedule='static', num_threads=num_threads):
        _depool_plane(o0 + pl * HW, v0 + pl * PQ, a0 + pl * PQ, HW, PQ)


cdef void depool2d_backward_kernel(floating[:, :, :, ::1] dvalues, const floating[:, :, :, ::1] dout,
                                   const int64_t[:, :, :, ::1] argmax, int num_threads) noexcept nogil:
    # dout (N, C, H, W), argmax (N, C, P, Q) -> dvalues (N, C, P, Q) = dout gathered at argmax
    cdef Py_ssize_t planes = dvalues.shape[0] * dvalues.shape[1]
    cdef Py_ssize_t HW = dout.shape[2] * dout.shape[3], PQ = dvalues.shape[2] * dvalues.shape[3]
    cdef Py_ssize_t pl, k
    cdef floating* dvp
    cdef const floating* dop
    cdef const int64_t* ap
    num_threads = threads_for(planes * PQ, num_threads)
    for pl in prange(planes, schedule='static', num_threads=num_threads):
        dvp = &dvalues[0, 0, 0, 0] + pl * PQ
        dop = &dout[0, 0, 0, 0] + pl * HW
        ap = &argmax[0, 0, 0, 0] + pl * PQ
        for k in range(PQ):
            dvp[k] = dop[ap[k]]


def maxpool2d_forward(floating[:, :, :, ::1] y, int64_t[:, :, :, ::1] argmax,
                      const floating[:, :, :, ::1] x, int kernel_h, int kernel_w,
                      int stride_h, int stride_w, int num_threads):
    with nogil:
        maxpool2d_forward_kernel(y, argmax, x, kernel_h, kernel_w, stride_h, stride_w, num_threads)


def depool2d(floating[:, :, :, ::1] out, const floating[:, :, :, ::1] values,
             const int64_t[:, :, :, ::1] argmax, int num_threads):
    """Also the max-pool backward: out = dx, values = dy."""
    with nogil:
        depool2d_kernel(out, values, argmax, num_threads)


def depool2d_backward(floating[:, :, :, ::1] dvalues, const floating[:, :, :, ::1] dout,
                      const int64_t[:, :, :, ::1] argmax, int num_threads):
    with nogil:
        depool2d_backward_kernel(dvalues, dout, argmax, num_threads)


def isa():
    """This module's level (fastnn_cpu.h): 'avx512', 'avx2' or 'baseline'."""
    return fastnn_isa_name(fastnn_isa()).decode()


def maxpool2x2_isa(long row_outputs):
    """The level fastnn_pool2x2.h's float32 2x2 max-pool runs a row of `row_outputs` outputs at:
    16 lanes only for rows of >= 16 (and where AVX-512 is forced or preferred), else 8 or 4."""
    if row_outputs < 1:
        raise ValueError(f"maxpool2x2_isa: row_outputs must be >= 1, got {row_outputs}")
    return fastnn_isa_name(fastnn_maxpool2x2_isa(row_outputs)).decode()
