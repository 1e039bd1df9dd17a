# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# Optimizer kernels: one fused element-wise pass over the flat parameter array.
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport pow, sqrt, sqrtf
from _parallel cimport threads_for_stream


cdef void sgd_update_kernel(floating[::1] param, const floating[::1] grad, floating[::1] velocity,
                            double lr, double momentum, double weight_decay,
                            int num_threads) noexcept nogil:
    # param (n,), grad (n,), velocity (n,) (unused when momentum == 0) -> param, velocity
    # g = grad + wd * param; v = momentum * v + g; param -= lr * v  (torch.optim.SGD)
    cdef Py_ssize_t n = param.shape[0], i
    cdef floating g, lr_ = <floating>lr, mu = <floating>momentum, wd = <floating>weight_decay
    num_threads = threads_for_stream(n, num_threads)
    if momentum == 0:
        for i in prange(n, schedule='static', num_threads=num_threads):
            param[i] -= lr_ * (grad[i] + wd * param[i])
    else:
        for i in prange(n, schedule='static', num_threads=num_threads):
            g = grad[i] + wd * param[i]
            velocity[i] = mu * velocity[i] + g
            param[i] -= lr_ * velocity[i]


cdef void adam_update_kernel(floating[::1] param, const floating[::1] grad, floating[::1] m,
                             floating[::1] v, long step, double lr, double beta1, double beta2,
                             double eps, double weight_decay, int num_threads) noexcept nogil:
    # param, grad, m, v (n,) -> param, m, v; step counts from 1  (torch.optim.Adam)
    # g = grad + wd * param; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
    # param -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps)
    cdef Py_ssize_t n = param.shape[0], i
    cdef double bc1 = 1 - pow(beta1, step), bc2 = 1 - pow(beta2, step)
    cdef floating b1 = <floating>beta1, b2 = <floating>beta2, eps_ = <floating>eps, g, denom
    cdef floating wd = <floating>weight_decay
    cdef floating step_size = <floating>(lr / bc1), inv_sqrt_bc2 = <floating>(1 / sqrt(bc2))
    num_threads = threads_for_stream(n, num_threads)
    for i in prange(n, schedule='static', num_threads=num_threads):
        g = grad[i] + wd * param[i]
        m[i] = b1 * m[i] + (1 - b1) * g
        v[i] = b2 * v[i] + (1 - b2) * g * g
        if floating is float:
            denom = sqrtf(v[i]) * inv_sqrt_bc2 + eps_
        else:
            denom = sqrt(v[i]) * inv_sqrt_bc2 + eps_
        param[i] -= step_size * m[i] / denom


def sgd_update(floating[::1] param, const floating[::1] grad, floating[::1] velocity,
               double lr, double momentum, double weight_decay, int num_threads):
    """velocity may be None when momentum == 0."""
    if momentum != 0 and velocity is None:
        raise ValueError("sgd_update: momentum > 0 needs a velocity array")
    with nogil:
        sgd_update_kernel(param, grad, velocity, lr, momentum, weight_decay, num_threads)


def adam_update(floating[::1] param, const floating[::1] grad, floating[::1] m, floating[::1] v,
                long step, double lr, double beta1, double beta2, double eps, double weight_decay,
                int num_threads):
    with nogil:
        adam_update_kernel(param, grad, m, v, step, lr, beta1, beta2, eps, weight_decay, num_threads)
