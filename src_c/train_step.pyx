# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# One training step of a float32 stack of Dense layers in a single call: forward, loss,
# backward and the optimizer update, composed of the same kernels as the layer-by-layer path
# (bit-identical results with momentum, weight decay or Adam, except where the first layer
# skips all-zero input columns: the same sums, fewer zero terms, so the last bits of the
# forward may differ). Plain SGD is applied by the dW
# GEMMs themselves (dense_backward_sgd_kernel): no gradient pass, 1.04-1.18x faster steps on
# the mlp/spiral/nielsen presets; the same formula, but w - lr * dw may round once or twice,
# so the last bit can differ from the layer-by-layer path (and model.grads keeps only db).
#
# Why: on small nets the step is call overhead, not arithmetic. Each Python-level kernel call
# acquires its typed memoryviews (~24k instructions for dense_forward's four, measured with
# callgrind on the spiral preset), so a 7-call step spent more than half its time there. Here
# the buffers are acquired once, when the model makes the plan for a batch size.
from libc.math cimport isfinite
from libc.stdint cimport int64_t
from libc.string cimport memcpy
from cython.parallel cimport prange
from _parallel cimport GEMM_PARALLEL_MIN_WORK, GEMM_PARALLEL_MIN_WEIGHT_BYTES
from fastnn._dense cimport (dense_forward_kernel, dense_backward_kernel, dense_backward_sgd_kernel,
                           nonzero_column_runs, finite_outside_runs, gather_runs,
                           dense_forward_compact_kernel, dense_backward_compact_kernel)
from _options cimport DX_SKIP, DX_COMPUTE
from fastnn._dense cimport DW_WRITE, DW_SGD_STEP
from fastnn._loss cimport softmax_cross_entropy_kernel, mse_labels_kernel, count_correct_kernel
from fastnn._optim cimport sgd_update_kernel, adam_update_kernel
from _elementwise cimport activate_row, slope_row

cdef extern from "fastnn_tiny_dense.h" nogil:
    Py_ssize_t fastnn_tiny_ld(Py_ssize_t n)
    void fastnn_tiny_transpose_in(float* xt, const float* x, Py_ssize_t n, Py_ssize_t ld, Py_ssize_t ins)
    void fastnn_tiny_forward(float* yt, const float* xt, const float* w, const float* b,
                             Py_ssize_t ld, Py_ssize_t ins, Py_ssize_t outs)
    double fastnn_tiny_softmax_ce(float* gt, const float* zt, const int64_t* labels, Py_ssize_t n,
                                  Py_ssize_t ld, Py_ssize_t K, float* scratch, Py_ssize_t* correct)
    double fastnn_tiny_mse_labels(float* gt, const float* zt, const int64_t* labels, Py_ssize_t n,
                                  Py_ssize_t ld, Py_ssize_t K, Py_ssize_t* correct)
    void fastnn_tiny_backward(float* dxt, float* dw, float* db, float* gt, const float* xt,
                              const float* w, Py_ssize_t ld, Py_ssize_t ins, Py_ssize_t outs)
    void fastnn_tiny_sgd(float* w, const float* dw, Py_ssize_t size, float lr)

import numpy as np

# The first layer skips input columns that are zero in the whole batch (dense.pxd) when at most
# this share of columns is left (gathering costs ~1/3 of the GEMM work it saves per column) and
# the batch has at least COMPACT_MIN_ROWS rows. On MNIST, mlp (batch 100) at 1 thread: 203 vs
# 249 us per step, at 2 threads even; Nielsen's batch of 10, whose GEMMs are the small kernels,
# lost (32 vs 28 us) (bench/bench_dense.py, group "skip-zero-columns").
cdef double COMPACT_MAX_KEPT = 0.8
cdef Py_ssize_t COMPACT_MIN_ROWS = 32

# Stacks whose forward pass is at most this many multiply-adds (batch x the layers' weights)
# take the batch-along-the-lanes loops of fastnn_tiny_dense.h: the spiral preset (1,500), not Nielsen's net
# (238,000 at batch 10). One thread: below this size a second one only adds its wake-up.
TINY_STEP_MAX_WORK = 16384

# run() on two or more threads, for stacks whose step runs on one thread anyway (every GEMM
# below the sizes gemm_parallel splits, _parallel.pxd): the second thread gathers the next
# batches' rows while the first steps on the batches it gathered before. Gathering 100 random
# rows of 3 KB (mlp) reads them from memory at a few GB/s, about a fifth of mlp's step on one
# thread. The threads meet once per PIPELINE_CHUNK_BYTES of gathered rows (at least one batch):
# every meeting costs an OpenMP region and the GIL, as much as gathering Nielsen's 10 rows.
PIPELINE_CHUNK_BYTES = 262144

COLUMNS = ("skip-zero", "all")  # DenseTrainStep's `columns` option; "skip-zero" is the default

cdef enum:
    LOSS_SOFTMAX_CROSS_ENTROPY = 0
    LOSS_MSE_LABELS = 1
    OPT_SGD = 0
    OPT_ADAM = 1

LOSS_KINDS = {"SoftmaxCrossEntropy": LOSS_SOFTMAX_CROSS_ENTROPY, "MSE": LOSS_MSE_LABELS}
OPTIMIZER_KINDS = {"SGD": OPT_SGD, "Adam": OPT_ADAM}


cdef class DenseBuffers:
    """One Dense layer's arrays for one batch size: its output y, input gradient dx (None for
    the first layer), weights w, b and their gradient views dw, db; act as in _elementwise.pxd."""
    cdef float[:, ::1] y, dx, w, dw
    cdef float[::1] b, db
    cdef int act
    cdef bint has_dx

    def __init__(self, float[:, ::1] y, dx, float[:, ::1] w, float[::1] b, float[:, ::1] dw,
                 float[::1] db, int act):
        self.y, self.w, self.b, self.dw, self.db, self.act = y, w, b, dw, db, act
        self.has_dx = dx is not None
        if self.has_dx:
            self.dx = dx


cdef check_chain(list layers, float[:, ::1] dout):
    """Each layer's arrays fit its weights, the batch and the layer below (the kernels trust it)."""
    cdef DenseBuffers layer
    cdef Py_ssize_t n = dout.shape[0], inputs = 0, outputs = 0, below, i
    for i in range(len(layers)):
        layer = layers[i]
        outputs, inputs = layer.w.shape[0], layer.w.shape[1]
        below = (<DenseBuffers>layers[i - 1]).w.shape[0] if i else inputs
        if (inputs != below or layer.dw.shape[0] != outputs or layer.dw.shape[1] != inputs
                or layer.b.shape[0] != outputs or layer.db.shape[0] != outputs
                or layer.y.shape[0] != n or layer.y.shape[1] != outputs or (i > 0) != layer.has_dx
                or (layer.has_dx and (layer.dx.shape[0] != n or layer.dx.shape[1] != inputs))):
            raise ValueError(f"DenseTrainStep: layer {i}'s arrays do not fit (w {outputs}x{inputs}, "
                             f"batch {n}, the layer below gives {below})")
    if dout.shape[1] != layer.w.shape[0]:
        raise ValueError(f"DenseTrainStep: dout has {dout.shape[1]} columns, the last layer gives {layer.w.shape[0]}")


cdef bint one_thread_gemms(DenseBuffers layer, Py_ssize_t batch):
    """Whether gemm_parallel (_blas.pxd) runs this layer's products on one thread at this batch:
    below its work and weight-size thresholds."""
    cdef Py_ssize_t outs = layer.w.shape[0], ins = layer.w.shape[1]
    return (<double>batch * outs * ins < GEMM_PARALLEL_MIN_WORK
            and <double>outs * ins * 4 < GEMM_PARALLEL_MIN_WEIGHT_BYTES)


cdef void gather_batch(float* xb, int64_t* yb, const float* x, const int64_t* labels,
                       const int64_t* rows, Py_ssize_t B, Py_ssize_t inputs) noexcept nogil:
    # xb (B, inputs), yb (B,) = rows rows[0..B) of x (N, inputs) and labels (N,), checked rows
    cdef Py_ssize_t i
    for i in range(B):
        memcpy(xb + i * inputs, x + rows[i] * inputs, inputs * sizeof(float))
        yb[i] = labels[rows[i]]


cdef class DenseTrainStep:
    """step(x, labels, ...) -> (mean loss before the update, correct predictions).

    layers: DenseBuffers, first to last; dout: the loss gradient buffer (N, classes); params,
    grads: the model's flat arrays the layers' w, b, dw, db are views of; state1, state2: the
    optimizer's flat state (SGD: velocity or None; Adam: m, v); columns: "skip-zero" lets the
    first layer skip the batch's all-zero input columns (see COMPACT_MAX_KEPT), "all" uses every
    column (for tests and benchmarks that compare the two).

    step() checks that the optimizer state fits the update it is asked for (SGD momentum needs
    a velocity, Adam needs m and v, all of params' size) and raises ValueError otherwise: the
    kernels below index these arrays without checks."""
    cdef list layers
    cdef object state_objects  # (state1, state2) as given, for uses_state()
    cdef bint has_state1, has_state2, skip_zero
    cdef float[:, ::1] dout
    cdef float[::1] params, grads, state1, state2
    cdef int loss_kind, optimizer_kind
    cdef Py_ssize_t batch
    # first-layer column skipping: flags (I,), runs (2I,), gathered x (N*I), w (O*I), dw (O*I)
    cdef unsigned int[::1] col_flags
    cdef int[::1] col_runs
    cdef float[::1] xc, wc, dwc
    cdef readonly Py_ssize_t last_kept_columns  # input columns the last step's GEMMs used
    cdef readonly bint tiny  # the step runs fastnn_tiny_dense.h's loops (TINY_STEP_MAX_WORK)
    # their transposed activations in one array, rows padded to tiny_ld: the input at 0, each
    # layer's y and gradient g (outs, tiny_ld) at tiny_y[i] and tiny_g[i], the loss's scratch
    # (2 x tiny_ld) at tiny_scratch
    cdef float[::1] tiny_buf
    cdef Py_ssize_t[::1] tiny_y, tiny_g
    cdef Py_ssize_t tiny_scratch, tiny_ld
    cdef float[:, ::1] xb, xb2  # run()'s gathered batches (pipelined: two chunks of them)
    cdef int64_t[::1] yb, yb2
    cdef readonly bint pipelined  # run() on >= 2 threads gathers ahead on the second thread
    cdef readonly Py_ssize_t chunk_steps  # steps per hand-off between the two (pipelined)

    def __init__(self, list layers, float[:, ::1] dout, float[::1] params, float[::1] grads,
                 state1, state2, int loss_kind, int optimizer_kind, columns="skip-zero"):
        if not layers or not all(isinstance(b, DenseBuffers) for b in layers):
            raise TypeError("DenseTrainStep: layers must be a non-empty list of DenseBuffers")
        if params.shape[0] != grads.shape[0]:
            raise ValueError(f"DenseTrainStep: grads has {grads.shape[0]} elements, params {params.shape[0]}")
        if loss_kind not in LOSS_KINDS.values() or optimizer_kind not in OPTIMIZER_KINDS.values():
            raise ValueError(f"DenseTrainStep: unknown loss kind {loss_kind} or optimizer kind {optimizer_kind}")
        self.columns = columns
        check_chain(layers, dout)
        self.layers, self.dout, self.params, self.grads = layers, dout, params, grads
        self.loss_kind, self.optimizer_kind = loss_kind, optimizer_kind
        self.batch = dout.shape[0]
        first = <DenseBuffers>layers[0]
        inputs, outputs = first.w.shape[1], first.w.shape[0]
        self.col_flags = np.empty(inputs, np.uintc)
        self.col_runs = np.empty(2 * inputs, np.intc)
        self.xc = np.empty(self.batch * inputs, np.float32)
        self.wc = np.empty(outputs * inputs, np.float32)
        self.dwc = np.empty(outputs * inputs, np.float32)  # untouched (not resident) with SGD
        self.last_kept_columns = inputs
        self.tiny = self.batch * sum((<DenseBuffers>b).w.shape[0] * (<DenseBuffers>b).w.shape[1]
                                     for b in layers) <= TINY_STEP_MAX_WORK
        self.pipelined = not self.tiny and all(one_thread_gemms(<DenseBuffers>b, self.batch) for b in layers)
        self.chunk_steps = max(1, PIPELINE_CHUNK_BYTES // (self.batch * inputs * 4)) if self.pipelined else 1
        rows = self.chunk_steps * self.batch
        self.xb, self.yb = np.empty((rows, inputs), np.float32), np.empty(rows, np.int64)
        if self.pipelined:
            self.xb2, self.yb2 = np.empty_like(self.xb), np.empty_like(self.yb)
        if self.tiny:
            self.plan_tiny(inputs)
        self.state_objects = (state1, state2)
        self.has_state1, self.has_state2 = state1 is not None, state2 is not None
        for name, state in (("state1", state1), ("state2", state2)):
            if state is not None and len(state) != params.shape[0]:
                raise ValueError(f"DenseTrainStep: {name} has {len(state)} elements, params {params.shape[0]}")
        if self.has_state1:
            self.state1 = state1
        if self.has_state2:
            self.state2 = state2

    cdef plan_tiny(self, Py_ssize_t inputs):
        """Lay out tiny_buf: the transposed input, then each layer's y and g, then the scratch
        (zeros: the input's padding lanes stay 0)."""
        cdef Py_ssize_t i, ld = fastnn_tiny_ld(self.batch), at = inputs * ld, outs
        self.tiny_ld = ld
        self.tiny_y = np.empty(len(self.layers), np.intp)
        self.tiny_g = np.empty(len(self.layers), np.intp)
        for i in range(len(self.layers)):
            outs = (<DenseBuffers>self.layers[i]).w.shape[0]
            self.tiny_y[i], self.tiny_g[i] = at, at + outs * ld
            at += 2 * outs * ld
        self.tiny_scratch = at
        self.tiny_buf = np.zeros(at + 2 * ld, np.float32)

    @property
    def columns(self):
        return "skip-zero" if self.skip_zero else "all"

    @columns.setter
    def columns(self, value):
        if value not in COLUMNS:
            raise ValueError(f"DenseTrainStep: columns must be one of {COLUMNS}, got {value!r:.80}")
        self.skip_zero = value == "skip-zero"

    def uses_state(self, state1, state2):
        """True when this plan was made with these optimizer state arrays (the optimizer may
        allocate new ones, e.g. SGD's velocity when momentum becomes > 0: make a new plan)."""
        return self.state_objects[0] is state1 and self.state_objects[1] is state2

    cdef check_update(self, double momentum, double weight_decay, long adam_step):
        """Raise unless the optimizer state can take this update (before any nogil kernel)."""
        if self.optimizer_kind == OPT_SGD:
            if momentum < 0 or weight_decay < 0:
                raise ValueError(f"DenseTrainStep: momentum and weight_decay must be >= 0, got "
                                 f"{momentum} and {weight_decay}")
            if momentum != 0 and not self.has_state1:
                raise ValueError(f"DenseTrainStep: SGD momentum={momentum} needs a velocity array, "
                                 f"and this step was made without one (make a new step after "
                                 f"changing momentum)")
        elif not (self.has_state1 and self.has_state2):
            raise ValueError("DenseTrainStep: Adam needs its m and v arrays, and this step was made without them")
        elif adam_step < 1:
            raise ValueError(f"DenseTrainStep: Adam's step counts from 1, got {adam_step}")

    def step(self, const float[:, ::1] x, const int64_t[::1] labels, double lr, double momentum,
             double weight_decay, double beta1, double beta2, double eps, long adam_step,
             int num_threads):
        # The caller (Sequential.train_step) checked the shapes against this plan.
        self.check_update(momentum, weight_decay, adam_step)
        if x.shape[1] != (<DenseBuffers>self.layers[0]).w.shape[1]:
            raise ValueError(f"DenseTrainStep: x has {x.shape[1]} columns, the first layer takes "
                             f"{(<DenseBuffers>self.layers[0]).w.shape[1]}")
        if x.shape[0] != self.batch or labels.shape[0] != self.batch:
            raise ValueError(f"DenseTrainStep: the plan is for batch {self.batch}, got x "
                             f"{x.shape[0]} and labels {labels.shape[0]}")
        self.check_labels(labels, 0, self.batch)
        return self.one_step(x, labels, lr, momentum, weight_decay, beta1, beta2, eps, adam_step,
                             num_threads)

    cdef check_labels(self, const int64_t[::1] labels, Py_ssize_t lo, Py_ssize_t hi):
        """The loss kernels index with labels: never out of bounds."""
        cdef Py_ssize_t i, classes = self.dout.shape[1]
        for i in range(lo, hi):
            if labels[i] < 0 or labels[i] >= classes:
                raise ValueError(f"train_step: labels must be in [0, {classes}), got {labels[i]}")

    def run(self, const float[:, ::1] x, const int64_t[::1] labels, order, Py_ssize_t first,
            double[::1] losses, int64_t[::1] correct, double lr, double momentum,
            double weight_decay, double beta1, double beta2, double eps, long adam_step,
            int num_threads):
        """Steps on batches first, first + 1, ... of an epoch, as many as `losses` holds, in one
        call: batch j is rows order[j*B:(j+1)*B] of x and labels (B: this plan's batch; order:
        int64 row indices, or None for rows j*B:(j+1)*B). Step i uses Adam step adam_step + i.
        Writes each step's loss and correct count into losses[i], correct[i]; stops after the
        first step whose loss is not finite. Returns the number of steps done.

        Why: a tiny network's step is ~10 us of kernels, and a Python call per step (gathering
        the batch, train_step, the loop's bookkeeping) costs about as much again. Each step here
        gathers its rows and runs exactly what step() runs, so results are bit-identical."""
        cdef Py_ssize_t steps = losses.shape[0], B = self.batch, n = x.shape[0], i, k, r
        cdef Py_ssize_t classes = self.dout.shape[1]
        cdef Py_ssize_t inputs = (<DenseBuffers>self.layers[0]).w.shape[1]
        cdef const int64_t[::1] rows
        cdef bint gather = order is not None
        self.check_update(momentum, weight_decay, adam_step)
        if x.shape[1] != inputs or labels.shape[0] != n or correct.shape[0] != steps:
            raise ValueError(f"DenseTrainStep.run: x must be (N, {inputs}) with N labels and "
                             f"correct as long as losses; got x ({n}, {x.shape[1]}), "
                             f"{labels.shape[0]} labels, {steps} losses, {correct.shape[0]} correct")
        if first < 0 or steps < 1:
            raise ValueError(f"DenseTrainStep.run: first must be >= 0 and losses non-empty, got "
                             f"first={first}, {steps} losses")
        if gather:
            rows = order
            if (first + steps) * B > rows.shape[0]:
                raise ValueError(f"DenseTrainStep.run: batches {first}..{first + steps - 1} of "
                                 f"{B} need {(first + steps) * B} rows, order has {rows.shape[0]}")
            # Inline, not check_labels per row: handing a memoryview to a method costs ~40 ns
            # (its reference count), about 1 us of a spiral step.
            for r in range(first * B, (first + steps) * B):
                if rows[r] < 0 or rows[r] >= n:
                    raise ValueError(f"DenseTrainStep.run: order holds row {rows[r]}, x has {n} rows")
                if labels[rows[r]] < 0 or labels[rows[r]] >= classes:
                    raise ValueError(f"train_step: labels must be in [0, {classes}), got {labels[rows[r]]}")
        else:
            if (first + steps) * B > n:
                raise ValueError(f"DenseTrainStep.run: batches {first}..{first + steps - 1} of "
                                 f"{B} need {(first + steps) * B} rows, x has {n}")
            self.check_labels(labels, first * B, (first + steps) * B)
        cdef double loss
        cdef Py_ssize_t n_correct
        if gather and self.pipelined and num_threads >= 2:
            return self.run_pipelined(x, labels, rows, first, losses, correct, lr, momentum,
                                      weight_decay, beta1, beta2, eps, adam_step)
        for k in range(steps):
            r = (first + k) * B
            if gather:
                with nogil:
                    gather_batch(&self.xb[0, 0], &self.yb[0], &x[0, 0], &labels[0], &rows[r], B, inputs)
                loss, n_correct = self.one_step(self.xb[:B], self.yb[:B], lr, momentum, weight_decay,
                                                beta1, beta2, eps, adam_step + k, num_threads)
            else:
                loss, n_correct = self.one_step(x[r:r + B], labels[r:r + B], lr, momentum,
                                                weight_decay, beta1, beta2, eps, adam_step + k,
                                                num_threads)
            losses[k], correct[k] = loss, n_correct
            if not isfinite(loss):
                return k + 1
        return steps

    cdef Py_ssize_t run_pipelined(self, const float[:, ::1] x, const int64_t[::1] labels,
                                  const int64_t[::1] rows, Py_ssize_t first, double[::1] losses,
                                  int64_t[::1] correct, double lr, double momentum,
                                  double weight_decay, double beta1, double beta2, double eps,
                                  long adam_step):
        """run() with the batches gathered a chunk ahead on a second thread: the steps of one
        chunk (chunk_steps batches) read one buffer while the next chunk is gathered into the
        other. The steps themselves run on one thread (their kernels would anyway: see
        `pipelined`), so results are bit-identical to run() on one thread."""
        cdef Py_ssize_t steps = losses.shape[0], B = self.batch, inputs = x.shape[1]
        cdef Py_ssize_t chunk = self.chunk_steps, lo, hi, next_hi, k
        cdef int part
        cdef bint even
        cdef (double, Py_ssize_t) result
        cdef float[:, ::1] xcur
        cdef int64_t[::1] ycur
        cdef float* xnext
        cdef int64_t* ynext
        with nogil:
            gather_batch(&self.xb[0, 0], &self.yb[0], &x[0, 0], &labels[0], &rows[first * B],
                         min(chunk, steps) * B, inputs)
        for lo in range(0, steps, chunk):
            hi, next_hi = min(steps, lo + chunk), min(steps, lo + 2 * chunk)
            even = (lo // chunk) % 2 == 0
            xcur, ycur = (self.xb, self.yb) if even else (self.xb2, self.yb2)
            xnext = &self.xb2[0, 0] if even else &self.xb[0, 0]
            ynext = &self.yb2[0] if even else &self.yb[0]
            with nogil:
                for part in prange(2, schedule='static', num_threads=2):
                    if part == 0:
                        with gil:
                            for k in range(lo, hi):
                                result = self.one_step(xcur[(k - lo) * B:(k - lo + 1) * B],
                                                       ycur[(k - lo) * B:(k - lo + 1) * B], lr,
                                                       momentum, weight_decay, beta1, beta2, eps,
                                                       adam_step + k, 1)
                                losses[k], correct[k] = result[0], result[1]
                                if not isfinite(result[0]):
                                    break
                    elif next_hi > hi:
                        gather_batch(xnext, ynext, &x[0, 0], &labels[0], &rows[(first + hi) * B],
                                     (next_hi - hi) * B, inputs)
            for k in range(lo, hi):
                if not isfinite(losses[k]):
                    return k + 1
        return steps

    cdef (double, Py_ssize_t) one_step(self, const float[:, ::1] x, const int64_t[::1] labels,
                                       double lr, double momentum, double weight_decay,
                                       double beta1, double beta2, double eps, long adam_step,
                                       int num_threads):
        """The step on a checked batch (shapes, labels and optimizer state)."""
        if x.shape[0] != self.batch or labels.shape[0] != self.batch:
            # The kernels write B rows into the layers' buffers: never more. Callers slice
            # their batch to B rows (run()'s buffers hold several); this keeps it that way.
            raise ValueError(f"DenseTrainStep: a batch of {x.shape[0]} rows and {labels.shape[0]} "
                             f"labels for a plan of {self.batch}")
        if self.tiny:
            return self.tiny_step(x, labels, lr, momentum, weight_decay, beta1, beta2, eps,
                                  adam_step, num_threads)
        cdef DenseBuffers layer, below
        cdef Py_ssize_t i, last = len(self.layers) - 1
        cdef double loss
        cdef Py_ssize_t correct
        cdef const float[:, ::1] inp = x
        cdef DenseBuffers first = self.layers[0]
        cdef Py_ssize_t inputs = first.w.shape[1], outputs = first.w.shape[0], nruns = 0, kept = 0
        cdef bint compact = self.skip_zero and self.batch >= COMPACT_MIN_ROWS
        with nogil:
            if compact:
                nruns = nonzero_column_runs(&x[0, 0], self.batch, inputs, &self.col_flags[0],
                                            &self.col_runs[0], &kept)
                compact = (0 < kept <= COMPACT_MAX_KEPT * inputs
                           and finite_outside_runs(&first.w[0, 0], outputs, inputs,
                                                   &self.col_runs[0], nruns))
            if compact:
                gather_runs(&self.xc[0], &x[0, 0], self.batch, inputs, &self.col_runs[0], nruns, kept)
                gather_runs(&self.wc[0], &first.w[0, 0], outputs, inputs, &self.col_runs[0], nruns, kept)
        self.last_kept_columns = kept if compact else inputs
        for i in range(last + 1):
            layer = self.layers[i]
            with nogil:
                if i == 0 and compact:
                    dense_forward_compact_kernel(layer.y, &self.xc[0], &self.wc[0], kept, layer.b,
                                                 layer.act, num_threads)
                else:
                    dense_forward_kernel(layer.y, inp, layer.w, layer.b, layer.act, num_threads)
            inp = layer.y
        with nogil:
            if self.loss_kind == LOSS_SOFTMAX_CROSS_ENTROPY:
                loss = softmax_cross_entropy_kernel(self.dout, inp, labels, num_threads)
            else:
                loss = mse_labels_kernel(self.dout, inp, labels, num_threads)
            correct = count_correct_kernel(inp, labels)
        cdef float[:, ::1] dy = self.dout
        # Plain SGD rides on the dW GEMMs (dense_backward_sgd_kernel): no gradient pass.
        cdef bint sgd_in_backward = self.optimizer_kind == OPT_SGD and momentum == 0 and weight_decay == 0
        cdef int dw_mode = DW_SGD_STEP if sgd_in_backward else DW_WRITE
        cdef int dx_mode
        for i in range(last, -1, -1):
            layer = self.layers[i]
            dx_mode = DX_COMPUTE if i > 0 else DX_SKIP  # the first layer's dx is read by nobody
            if i > 0:
                below = self.layers[i - 1]
                inp = below.y
            else:
                inp = x
            with nogil:
                if i == 0 and compact:
                    dense_backward_compact_kernel(layer.w, layer.b, layer.dw, layer.db, dy, layer.y,
                                                  layer.act, &self.xc[0], &self.wc[0], &self.dwc[0],
                                                  &self.col_runs[0], nruns, kept, dw_mode,
                                                  <float>lr, num_threads)
                elif sgd_in_backward:
                    dense_backward_sgd_kernel(layer.dx, layer.w, layer.b, layer.db, dy, inp, layer.y,
                                              layer.act, dx_mode, <float>lr, num_threads)
                else:
                    dense_backward_kernel(layer.dx, layer.dw, layer.db, dy, inp, layer.w, layer.y,
                                          layer.act, dx_mode, num_threads)
            if i > 0:
                dy = layer.dx
        if sgd_in_backward:
            return loss, correct
        with nogil:
            if self.optimizer_kind == OPT_SGD:
                sgd_update_kernel(self.params, self.grads, self.state1, lr, momentum,
                                  weight_decay, num_threads)
            else:
                adam_update_kernel(self.params, self.grads, self.state1, self.state2, adam_step,
                                   lr, beta1, beta2, eps, weight_decay, num_threads)
        return loss, correct


    cdef (double, Py_ssize_t) tiny_step(self, const float[:, ::1] x, const int64_t[::1] labels,
                                        double lr, double momentum, double weight_decay,
                                        double beta1, double beta2, double eps, long adam_step,
                                        int num_threads):
        """one_step for tiny stacks: fastnn_tiny_dense.h's loops on transposed activations,
        then the optimizer. Writes the full gradients (dw and db) whatever the optimizer."""
        cdef DenseBuffers layer
        cdef Py_ssize_t i, n = self.batch, last = len(self.layers) - 1, correct
        cdef float* buf = &self.tiny_buf[0]
        cdef Py_ssize_t ld = self.tiny_ld
        cdef const float* inp = buf
        cdef float* dx
        cdef double loss
        layer = self.layers[0]
        fastnn_tiny_transpose_in(buf, &x[0, 0], n, ld, layer.w.shape[1])
        for i in range(last + 1):
            layer = self.layers[i]
            fastnn_tiny_forward(buf + self.tiny_y[i], inp, &layer.w[0, 0], &layer.b[0], ld,
                                layer.w.shape[1], layer.w.shape[0])
            activate_row(buf + self.tiny_y[i], layer.w.shape[0] * ld, layer.act)
            inp = buf + self.tiny_y[i]
        if self.loss_kind == LOSS_SOFTMAX_CROSS_ENTROPY:
            loss = fastnn_tiny_softmax_ce(buf + self.tiny_g[last], inp, &labels[0], n, ld,
                                          self.dout.shape[1], buf + self.tiny_scratch, &correct)
        else:
            loss = fastnn_tiny_mse_labels(buf + self.tiny_g[last], inp, &labels[0], n, ld,
                                          self.dout.shape[1], &correct)
        for i in range(last, -1, -1):
            layer = self.layers[i]
            inp = buf if i == 0 else buf + self.tiny_y[i - 1]
            dx = buf + self.tiny_g[i - 1] if i > 0 else NULL
            slope_row(buf + self.tiny_g[i], buf + self.tiny_y[i], layer.w.shape[0] * ld, layer.act)
            fastnn_tiny_backward(dx, &layer.dw[0, 0], &layer.db[0], buf + self.tiny_g[i], inp,
                                 &layer.w[0, 0], ld, layer.w.shape[1], layer.w.shape[0])
        if self.optimizer_kind == OPT_SGD and momentum == 0 and weight_decay == 0:
            for i in range(last + 1):
                layer = self.layers[i]
                fastnn_tiny_sgd(&layer.w[0, 0], &layer.dw[0, 0], layer.w.shape[0] * layer.w.shape[1], <float>lr)
                fastnn_tiny_sgd(&layer.b[0], &layer.db[0], layer.b.shape[0], <float>lr)
        elif self.optimizer_kind == OPT_SGD:
            sgd_update_kernel(self.params, self.grads, self.state1, lr, momentum, weight_decay, 1)
        else:
            adam_update_kernel(self.params, self.grads, self.state1, self.state2, adam_step,
                               lr, beta1, beta2, eps, weight_decay, 1)
        return loss, correct
