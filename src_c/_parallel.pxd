# When a kernel pass is worth splitting over OpenMP threads: the one definition, cimported by
# every kernel module. Below these sizes a pass runs on one thread, because waking the pool and
# splitting the work cost more than the second core gives on tiny layers (pytorch#144633).
#
# Two per-pass values, since the first kernels (commit f5b97d6), kept as they were so that no op
# changes its thread count (no measurement was recorded for either value):
#   PARALLEL_MIN_WORK    a pass that does a few operations per element touched (conv im2col and
#                        col2im, pooling windows, softmax rows, the dense bias + activation)
#   PARALLEL_MIN_STREAM  a pure streaming pass of one to three operations per element
#                        (activations, optimizer updates): twice the elements for the same work
# and one per GEMM, counted in multiply-adds rather than elements (gemm_parallel in _blas.pxd):
#   GEMM_PARALLEL_MIN_WORK   2^23 (8.4M): splitting the mlp preset's GEMMs (100x50x784 = 3.9M)
#                            made its step slower, with idle threads sleeping between regions
#                            (fastnn's default wait policy, _openmp_env.py) and even with them
#                            spinning: `fastnn train --model mlp --epochs 1`, 2 threads, 0.22-0.26 s
#                            (passive) and 0.14-0.17 s (spin) at 2^18, 0.14-0.15 s with both at
#                            2^23, as at 1 thread. LeNet's fc1 (64x500x800 = 25.6M) and im2col
#                            GEMMs stay split.
#   GEMM_PARALLEL_MIN_WEIGHT_BYTES  2^19 (512 KB): also split a small-batch dense forward whose
#                            weights are at least this big, with blocks of at least
#                            GEMM_SPLIT_MIN_COLUMNS columns (_streams_weights in _blas.pxd).
cdef enum:
    PARALLEL_MIN_WORK = 32768
    PARALLEL_MIN_STREAM = 65536
    GEMM_PARALLEL_MIN_WORK = 1 << 23
    GEMM_PARALLEL_MIN_WEIGHT_BYTES = 1 << 19
    GEMM_SPLIT_MIN_COLUMNS = 160


cdef inline int threads_for(Py_ssize_t work, int num_threads) noexcept nogil:
    # num_threads for a pass touching `work` elements, 1 below PARALLEL_MIN_WORK
    return num_threads if work >= PARALLEL_MIN_WORK else 1


cdef inline int threads_for_stream(Py_ssize_t n, int num_threads) noexcept nogil:
    # num_threads for a streaming pass over n elements, 1 below PARALLEL_MIN_STREAM
    return num_threads if n >= PARALLEL_MIN_STREAM else 1
