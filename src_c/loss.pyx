# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# Loss kernels: one output row per OpenMP iteration; losses summed in double (an OpenMP
# reduction, so the last bits can differ between thread counts).
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport exp, expf, fabs, log, log1p
from libc.stdint cimport int64_t
from _parallel cimport threads_for


cdef inline floating _exp(floating z) noexcept nogil:
    if floating is float:
        return expf(z)
    else:
        return exp(z)


cdef inline double _softmax_row(floating* y, const floating* x, Py_ssize_t K,
                                double scale) noexcept nogil:
    # x (K,) -> y (K,) = scale * softmax(x); returns log(sum(exp(x))), shifted by the max so
    # neither exp overflows nor the sum underflows.
    cdef Py_ssize_t j
    cdef floating m = x[0]
    cdef double s = 0
    for j in range(1, K):
        if x[j] > m:
            m = x[j]
    for j in range(K):
        y[j] = _exp(x[j] - m)
        s += y[j]
    for j in range(K):
        y[j] = <floating>(y[j] * (scale / s))
    return m + log(s)


cdef void softmax_forward_kernel(floating[:, ::1] y, const floating[:, ::1] x,
                                 int num_threads) noexcept nogil:
    # x (N, K) -> y (N, K), softmax of each row
    cdef Py_ssize_t N = x.shape[0], K = x.shape[1], r
    for r in prange(N, schedule='static', num_threads=threads_for(N * K, num_threads)):
        _softmax_row(&y[r, 0], &x[r, 0], K, 1.0)


cdef double softmax_cross_entropy_kernel(floating[:, ::1] dlogits, const floating[:, ::1] logits,
                                         const int64_t[::1] labels, int num_threads) noexcept nogil:
    # logits (N, K), labels (N,) -> dlogits (N, K) = (softmax - onehot) / N; returns mean loss
    cdef Py_ssize_t N = logits.shape[0], K = logits.shape[1], r
    cdef double inv_n = 1.0 / N, total = 0
    cdef int threads = threads_for(N * K, num_threads)
    if threads == 1:  # the same sums in the same order, without entering an OpenMP region
        for r in range(N):
            total += _softmax_ce_row(&dlogits[r, 0], &logits[r, 0], labels[r], K, inv_n)
        return total * inv_n
    for r in prange(N, schedule='static', num_threads=threads):
        total += _softmax_ce_row(&dlogits[r, 0], &logits[r, 0], labels[r], K, inv_n)
    return total * inv_n


cdef inline double _softmax_ce_row(floating* dlogits, const floating* logits, int64_t label,
                                   Py_ssize_t K, double inv_n) noexcept nogil:
    # one row of softmax_cross_entropy_kernel: dlogits = (softmax - onehot) / N; returns the
    # row's loss
    cdef double loss = _softmax_row(dlogits, logits, K, inv_n) - logits[label]
    dlogits[label] -= <floating>inv_n
    return loss


cdef double mse_kernel(floating[:, ::1] dpred, const floating[:, ::1] pred,
                       const floating[:, ::1] target, int num_threads) noexcept nogil:
    # pred (N, F), target (N, F) -> dpred (N, F) = (pred - target) / N;
    # returns mean over N of 0.5 * sum over F of (pred - target)^2
    cdef Py_ssize_t N = pred.shape[0], size = N * pred.shape[1], i
    cdef const floating* p = &pred[0, 0]
    cdef const floating* t = &target[0, 0]
    cdef floating* d = &dpred[0, 0]
    cdef floating inv_n = <floating>(1.0 / N), diff
    cdef double total = 0
    for i in prange(size, schedule='static', num_threads=threads_for(size, num_threads)):
        diff = p[i] - t[i]
        d[i] = diff * inv_n
        total += <double>diff * diff
    return 0.5 * total / N


cdef double mse_labels_kernel(floating[:, ::1] dpred, const floating[:, ::1] pred,
                              const int64_t[::1] labels, int num_threads) noexcept nogil:
    # mse_kernel with target = one-hot(labels) (N, K), never materialised (Nielsen's network)
    cdef Py_ssize_t N = pred.shape[0], K = pred.shape[1], r
    cdef floating inv_n = <floating>(1.0 / N)
    cdef double total = 0
    cdef int threads = threads_for(N * K, num_threads)
    if threads == 1:  # the same sums in the same order, without entering an OpenMP region
        for r in range(N):
            total += _mse_label_row(&dpred[r, 0], &pred[r, 0], labels[r], K, inv_n)
        return 0.5 * total / N
    for r in prange(N, schedule='static', num_threads=threads):
        total += _mse_label_row(&dpred[r, 0], &pred[r, 0], labels[r], K, inv_n)
    return 0.5 * total / N


cdef inline double _mse_label_row(floating* dpred, const floating* pred, int64_t label,
                                  Py_ssize_t K, floating inv_n) noexcept nogil:
    # one row of mse_labels_kernel: dpred = (pred - onehot) / N; returns the row's sum of squares
    cdef Py_ssize_t j
    cdef floating diff
    cdef double total = 0
    for j in range(K):
        diff = pred[j] - (j == label)
        dpred[j] = diff * inv_n
        total += <double>diff * diff
    return total


cdef double bce_with_logits_kernel(floating[:, ::1] dlogits, const floating[:, ::1] logits,
                                   const floating[:, ::1] target, int num_threads) noexcept nogil:
    # logits z (N, F), target t (N, F) -> dlogits (N, F) = (sigmoid(z) - t) / (N F);
    # returns mean of max(z, 0) - z t + log1p(exp(-|z|)), exact for any finite z
    cdef Py_ssize_t size = logits.shape[0] * logits.shape[1], i
    cdef const floating* z = &logits[0, 0]
    cdef const floating* t = &target[0, 0]
    cdef floating* d = &dlogits[0, 0]
    cdef floating inv_size = <floating>(1.0 / size), e, sig
    cdef double total = 0
    for i in prange(size, schedule='static', num_threads=threads_for(size, num_threads)):
        e = _exp(-fabs(z[i]))
        sig = 1 / (1 + e) if z[i] >= 0 else e / (1 + e)
        d[i] = (sig - t[i]) * inv_size
        total += (z[i] if z[i] > 0 else 0) - <double>z[i] * t[i] + log1p(e)
    return total / size


cdef Py_ssize_t count_correct_kernel(const floating[:, ::1] logits,
                                     const int64_t[::1] labels) noexcept nogil:
    # logits (N, K), labels (N,) -> rows whose first argmax is the label (one column: logit > 0)
    cdef Py_ssize_t N = logits.shape[0], K = logits.shape[1], r, j, best, correct = 0
    for r in range(N):
        if K == 1:
            best = 1 if logits[r, 0] > 0 else 0
        else:
            best = 0
            for j in range(1, K):
                if logits[r, j] > logits[r, best]:
                    best = j
        correct += best == labels[r]
    return correct


def softmax_forward(floating[:, ::1] y, const floating[:, ::1] x, int num_threads):
    with nogil:
        softmax_forward_kernel(y, x, num_threads)


def softmax_cross_entropy(floating[:, ::1] dlogits, const floating[:, ::1] logits,
                          const int64_t[::1] labels, int num_threads):
    cdef double loss
    with nogil:
        loss = softmax_cross_entropy_kernel(dlogits, logits, labels, num_threads)
    return loss


def _rows(a):
    # (N, ...) -> an (N, F) view; a copy would make the kernel write where nobody reads.
    if a.ndim == 2:
        return a
    if not a.flags.c_contiguous:
        raise ValueError(f"loss kernels need C-contiguous arrays, got strides {a.strides}")
    return a.reshape(a.shape[0], -1) if a.ndim > 1 else a.reshape(-1, 1)


def _mse(floating[:, ::1] dpred, const floating[:, ::1] pred, const floating[:, ::1] target,
         int num_threads):
    cdef double loss
    with nogil:
        loss = mse_kernel(dpred, pred, target, num_threads)
    return loss


def mse_labels(floating[:, ::1] dpred, const floating[:, ::1] pred, const int64_t[::1] labels,
               int num_threads):
    """mse() against one-hot(labels); labels must be in [0, K) (checked by the caller)."""
    cdef double loss
    with nogil:
        loss = mse_labels_kernel(dpred, pred, labels, num_threads)
    return loss


def _bce_with_logits(floating[:, ::1] dlogits, const floating[:, ::1] logits,
                     const floating[:, ::1] target, int num_threads):
    cdef double loss
    with nogil:
        loss = bce_with_logits_kernel(dlogits, logits, target, num_threads)
    return loss


def mse(dpred, pred, target, int num_threads):
    """Arrays of any shape (N, ...), all the same: viewed as (N, F) without copying."""
    return _mse(_rows(dpred), _rows(pred), _rows(target), num_threads)


def bce_with_logits(dlogits, logits, target, int num_threads):
    """Arrays of any shape (N, ...), all the same: viewed as (N, F) without copying."""
    return _bce_with_logits(_rows(dlogits), _rows(logits), _rows(target), num_threads)


def count_correct(const floating[:, ::1] logits, const int64_t[::1] labels):
    cdef Py_ssize_t correct
    with nogil:
        correct = count_correct_kernel(logits, labels)
    return correct
