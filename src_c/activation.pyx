# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# Activation kernels: memory-bound element-wise loops, split statically across threads.
from cython cimport floating
from cython.parallel cimport prange
from _elementwise cimport sigmoid_of, tanh_of
from _parallel cimport threads_for_stream


cdef void relu_forward_kernel(floating[::1] y, const floating[::1] x, int num_threads) noexcept nogil:
    # x (n,) -> y (n,) = max(x, 0)
    cdef Py_ssize_t n = x.shape[0], i
    cdef floating* yp = &y[0]
    cdef const floating* xp = &x[0]
    # Branch-free so gcc vectorises it: a branch on the sign mispredicts half the time.
    for i in prange(n, schedule='static', num_threads=threads_for_stream(n, num_threads)):
        yp[i] = xp[i] * (xp[i] > 0)


cdef void relu_backward_kernel(floating[::1] dx, const floating[::1] dy, const floating[::1] y,
                               int num_threads) noexcept nogil:
    # dy (n,), y (n,) (or x) -> dx (n,) = dy where y > 0
    cdef Py_ssize_t n = y.shape[0], i
    cdef floating* dxp = &dx[0]
    cdef const floating* dyp = &dy[0]
    cdef const floating* yp = &y[0]
    # Branch-free (see relu_forward_kernel).
    for i in prange(n, schedule='static', num_threads=threads_for_stream(n, num_threads)):
        dxp[i] = dyp[i] * (yp[i] > 0)


cdef void sigmoid_forward_kernel(floating[::1] y, const floating[::1] x, int num_threads) noexcept nogil:
    # x (n,) -> y (n,) = 1 / (1 + exp(-x))
    cdef Py_ssize_t n = x.shape[0], i
    cdef floating* yp = &y[0]
    cdef const floating* xp = &x[0]
    for i in prange(n, schedule='static', num_threads=threads_for_stream(n, num_threads)):
        yp[i] = sigmoid_of(xp[i])


cdef void sigmoid_backward_kernel(floating[::1] dx, const floating[::1] dy, const floating[::1] y,
                                  int num_threads) noexcept nogil:
    # dy (n,), y = sigmoid(x) (n,) -> dx (n,) = dy * y * (1 - y)
    cdef Py_ssize_t n = y.shape[0], i
    cdef floating* dxp = &dx[0]
    cdef const floating* dyp = &dy[0]
    cdef const floating* yp = &y[0]
    for i in prange(n, schedule='static', num_threads=threads_for_stream(n, num_threads)):
        dxp[i] = dyp[i] * yp[i] * (1 - yp[i])


cdef void tanh_forward_kernel(floating[::1] y, const floating[::1] x, int num_threads) noexcept nogil:
    # x (n,) -> y (n,) = tanh(x)
    cdef Py_ssize_t n = x.shape[0], i
    cdef floating* yp = &y[0]
    cdef const floating* xp = &x[0]
    for i in prange(n, schedule='static', num_threads=threads_for_stream(n, num_threads)):
        yp[i] = tanh_of(xp[i])


cdef void tanh_backward_kernel(floating[::1] dx, const floating[::1] dy, const floating[::1] y,
                               int num_threads) noexcept nogil:
    # dy (n,), y = tanh(x) (n,) -> dx (n,) = dy * (1 - y^2)
    cdef Py_ssize_t n = y.shape[0], i
    cdef floating* dxp = &dx[0]
    cdef const floating* dyp = &dy[0]
    cdef const floating* yp = &y[0]
    for i in prange(n, schedule='static', num_threads=threads_for_stream(n, num_threads)):
        dxp[i] = dyp[i] * (1 - yp[i] * yp[i])


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
