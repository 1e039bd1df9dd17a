# Optimizer steps, in place on flat C-contiguous parameter arrays (PyTorch formulas).
# param and the optimizer state are overwritten; grad is only read.
from cython cimport floating

cdef void sgd_update_kernel(floating[::1] param, const floating[::1] grad, floating[::1] velocity,
                            double lr, double momentum, double weight_decay,
                            int num_threads) noexcept nogil
cdef void adam_update_kernel(floating[::1] param, const floating[::1] grad, floating[::1] m,
                             floating[::1] v, long step, double lr, double beta1, double beta2,
                             double eps, double weight_decay, int num_threads) noexcept nogil
