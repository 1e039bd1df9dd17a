# A Dense layer's forward and backward for tiny layers, in plain loops on raw pointers, for the
# one-call step of tiny stacks (train_step.pyx: the spiral preset's 2-10-3 net at batch 30 is
# 1,500 multiply-adds a forward pass).
#
# Why: at that size a step is fixed costs, not arithmetic: each OpenBLAS call (five a step,
# some with buffer allocation under a lock), each OpenMP region (even of one thread) and each
# memoryview handed to a kernel costs more than the layer's multiply-adds. These loops do the
# same sums as the GEMM path, in another order (results agree to rounding, not to the bit).
from _elementwise cimport bias_activate_row, slope_row, ACT_NONE


cdef inline void tiny_dense_forward(float* y, const float* x, const float* w, const float* b,
                                    Py_ssize_t n, Py_ssize_t ins, Py_ssize_t outs,
                                    int act) noexcept nogil:
    # y (n, outs) = act(x (n, ins) @ w (outs, ins).T + b)
    cdef Py_ssize_t r, o, i
    cdef float acc
    for r in range(n):
        for o in range(outs):
            acc = 0
            for i in range(ins):
                acc = acc + x[r * ins + i] * w[o * ins + i]
            y[r * outs + o] = acc
        bias_activate_row(&y[r * outs], b, outs, act)


cdef inline void tiny_dense_backward(float* dx, float* dw, float* db, float* dy, const float* x,
                                     const float* w, const float* y, Py_ssize_t n,
                                     Py_ssize_t ins, Py_ssize_t outs, int act,
                                     bint need_dx) noexcept nogil:
    # dy (n, outs) becomes dz = dy * act'(y) in place; then dw = dz.T @ x, db = column sums of
    # dz, and (need_dx) dx = dz @ w, with w as it is before any update
    cdef Py_ssize_t r, o, i
    cdef float g, acc
    if act != ACT_NONE:
        for r in range(n):
            slope_row(&dy[r * outs], &y[r * outs], outs, act)
    # Rows outermost, dw and db (a few hundred floats, in L1) accumulated in place: every
    # (o, i) sum is its own chain, one add per row, and the chains overlap. Summing each (o, i)
    # over the rows in a register instead made one serial chain of n adds per weight: 2.3 us
    # of the spiral step's 5 went to waiting on those adds.
    for o in range(outs):
        db[o] = 0
    for i in range(outs * ins):
        dw[i] = 0
    for r in range(n):
        for o in range(outs):
            g = dy[r * outs + o]
            db[o] = db[o] + g
            for i in range(ins):
                dw[o * ins + i] = dw[o * ins + i] + g * x[r * ins + i]
    if need_dx:
        for r in range(n):
            for i in range(ins):
                acc = 0
                for o in range(outs):
                    acc = acc + dy[r * outs + o] * w[o * ins + i]
                dx[r * ins + i] = acc


cdef inline void tiny_sgd_step(float* w, const float* dw, Py_ssize_t size, float lr) noexcept nogil:
    # plain SGD on one array: w -= lr * dw
    cdef Py_ssize_t i
    for i in range(size):
        w[i] = w[i] - lr * dw[i]
