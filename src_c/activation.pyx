# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# Activation kernels: memory-bound element-wise loops, split statically across threads. A pass
# that runs on one thread enters no OpenMP region: a region of one thread still costs its set-up
# (about 1 us, as much as the loop itself on LeNet's batch-1 activations of 11,520 values).
from cython cimport floating
from cython.parallel cimport prange
from libc.string cimport memcpy
from _elementwise cimport activate_row, slope_row, ACT_RELU
from _parallel cimport threads_for_stream
from _cpu cimport fastnn_isa, fastnn_isa_name, fastnn_isa_simd_name

cdef extern from "fastnn_elementwise.h" nogil:
    # float32: the same passes in AVX-512, AVX2 and baseline builds, picked at run time
    void fastnn_ew_span(int op, float* out, const float* a, const float* y, long n)
    int fastnn_ew_isa()
    cdef enum:
        RELU_FORWARD "FASTNN_EW_RELU_FORWARD"
        RELU_BACKWARD "FASTNN_EW_RELU_BACKWARD"
        SIGMOID_FORWARD "FASTNN_EW_SIGMOID_FORWARD"
        SIGMOID_BACKWARD "FASTNN_EW_SIGMOID_BACKWARD"
        TANH_FORWARD "FASTNN_EW_TANH_FORWARD"
        TANH_BACKWARD "FASTNN_EW_TANH_BACKWARD"


cdef inline void _span(int op, floating* out, const floating* a, const floating* y,
                       Py_ssize_t n) noexcept nogil:
    # out[:n] = op(a[:n]) (forward: a = x) or op(a[:n], y[:n]) (backward: a = dy, y = the
    # forward's output). float32 runs fastnn_elementwise.h's build for this CPU; float64 (the
    # gradient checks) _elementwise.pxd's in-place rows, the dense layer's own, on a copy of a.
    # The ops pair up: op // 2 is the activation (ACT_RELU - 1, ...), op % 2 the backward.
    if floating is float:
        fastnn_ew_span(op, out, a, y, n)
        return
    if out != a:
        memcpy(out, a, n * sizeof(floating))
    if op % 2 == 0:
        activate_row(out, n, ACT_RELU + op // 2)
    else:
        slope_row(out, y, n, ACT_RELU + op // 2)


cdef void _run(int op, floating* out, const floating* a, const floating* y, Py_ssize_t n,
               int num_threads) noexcept nogil:
    # _span over n values, on one thread or in equal chunks over threads_for_stream's threads
    cdef int threads = threads_for_stream(n, num_threads), t
    cdef Py_ssize_t chunk, lo
    if threads == 1:
        _span(op, out, a, y, n)
        return
    chunk = (n + threads - 1) // threads
    for t in prange(threads, schedule='static', num_threads=threads):
        lo = t * chunk
        if lo < n:
            _span(op, out + lo, a + lo, y + lo if y != NULL else NULL, min(chunk, n - lo))


cdef void relu_forward_kernel(floating[::1] y, const floating[::1] x, int num_threads) noexcept nogil:
    # x (n,) -> y (n,) = max(x, 0)
    _run(RELU_FORWARD, &y[0], &x[0], <const floating*>NULL, x.shape[0], num_threads)


cdef void relu_backward_kernel(floating[::1] dx, const floating[::1] dy, const floating[::1] y,
                               int num_threads) noexcept nogil:
    # dy (n,), y (n,) (or x) -> dx (n,) = dy where y > 0
    _run(RELU_BACKWARD, &dx[0], &dy[0], &y[0], y.shape[0], num_threads)


cdef void sigmoid_forward_kernel(floating[::1] y, const floating[::1] x, int num_threads) noexcept nogil:
    # x (n,) -> y (n,) = 1 / (1 + exp(-x))
    _run(SIGMOID_FORWARD, &y[0], &x[0], <const floating*>NULL, x.shape[0], num_threads)


cdef void sigmoid_backward_kernel(floating[::1] dx, const floating[::1] dy, const floating[::1] y,
                                  int num_threads) noexcept nogil:
    # dy (n,), y = sigmoid(x) (n,) -> dx (n,) = dy * y * (1 - y)
    _run(SIGMOID_BACKWARD, &dx[0], &dy[0], &y[0], y.shape[0], num_threads)


cdef void tanh_forward_kernel(floating[::1] y, const floating[::1] x, int num_threads) noexcept nogil:
    # x (n,) -> y (n,) = tanh(x)
    _run(TANH_FORWARD, &y[0], &x[0], <const floating*>NULL, x.shape[0], num_threads)


cdef void tanh_backward_kernel(floating[::1] dx, const floating[::1] dy, const floating[::1] y,
                               int num_threads) noexcept nogil:
    # dy (n,), y = tanh(x) (n,) -> dx (n,) = dy * (1 - y^2)
    _run(TANH_BACKWARD, &dx[0], &dy[0], &y[0], y.shape[0], num_threads)


def relu_forward(floating[::1] y, const floating[::1] x, int num_threads):
    with nogil:
        relu_forward_kernel(y, x, num_threads)


def relu_backward(floating[::1] dx, const floating[::1] dy, const floating[::1] y, int num_threads):
    with nogil:
        relu_backward_kernel(dx, dy, y, num_threads)


def sigmoid_forward(floating[::1] y, const floating[::1] x, int num_threads):
    with nogil:
        sigmoid_forward_kernel(y, x, num_threads)


def sigmoid_backward(floating[::1] dx, const floating[::1] dy, const floating[::1] y, int num_threads):
    with nogil:
        sigmoid_backward_kernel(dx, dy, y, num_threads)


def tanh_forward(floating[::1] y, const floating[::1] x, int num_threads):
    with nogil:
        tanh_forward_kernel(y, x, num_threads)


def tanh_backward(floating[::1] dx, const floating[::1] dy, const floating[::1] y, int num_threads):
    with nogil:
        tanh_backward_kernel(dx, dy, y, num_threads)


def simd():
    """The build the float32 activation passes run here (fastnn_elementwise.h): 'avx512f+fma',
    'avx2+fma' or 'baseline'."""
    return fastnn_isa_simd_name(fastnn_ew_isa()).decode()


def isa():
    """This module's level (fastnn_cpu.h): 'avx512', 'avx2' or 'baseline'."""
    return fastnn_isa_name(fastnn_isa()).decode()
