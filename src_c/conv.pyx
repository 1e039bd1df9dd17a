# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# conv2d kernels (being written).
from _blas cimport gemm, fastnn_bind_gemm

include "_bind.pxi"
