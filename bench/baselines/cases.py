"""Workloads, data and contenders shared by bench/compare.py, bench/bench_compare.py and
tests/test_baselines.py.

A contender is (train_step(x, y), predict(x)) plus a context manager that gives it `threads`
threads: fastnn.set_num_threads, torch.set_num_threads, or threadpoolctl on numpy's own BLAS
only (fastnn's OpenBLAS stays single-threaded on purpose: fastnn splits GEMMs over its OpenMP
threads, and threadpoolctl raising it would make fastnn defer to OpenBLAS threading).
Nothing here imports fastnn or torch before a contender of theirs is asked for.
"""
import contextlib
import functools
import gzip
import importlib.util
import os
import sys

import numpy as np

from . import numpy_nets, spec_of, weights_of
from .peers import PEERS

WORKLOADS = {"nielsen": 10, "mlp": 100, "lenet": 64, "spiral": 30}  # name -> batch size
CONTENDERS = ("fastnn", "torch", "numpy")
# LeNet's conv/pool layers on a batch of 64: (x shape, w shape or pool, need_dx as in training).
KERNELS = {"conv1": ((64, 1, 28, 28), (20, 1, 5, 5), False),
           "conv2": ((64, 20, 12, 12), (50, 20, 5, 5), True),
           "pool1": ((64, 20, 24, 24), (2, 2), True),
           "pool2": ((64, 50, 8, 8), (2, 2), True)}


def have_torch():
    """Without importing it: a process that never uses torch must not pay for it."""
    return importlib.util.find_spec("torch") is not None


# -- data -----------------------------------------------------------------------------------
def mnist_dir():
    here = os.path.dirname(os.path.abspath(__file__))
    for folder in (os.environ.get("FASTNN_DATA"), os.path.join(here, "..", "..", "..", "shared", "data", "mnist"),
                   "/work/shared/data/mnist"):
        if folder and os.path.exists(os.path.join(folder, "train-images-idx3-ubyte.gz")):
            return folder
    return None


@functools.lru_cache(maxsize=4)
def read_idx_gz(path):
    """An IDX file (gzip) as a numpy array: 4-byte magic (dtype code, ndim), big-endian dims."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    out = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)
    out.flags.writeable = False  # cached: shared by every caller
    return out


def mnist(split="train", limit=None):
    """(x float32 in [0, 1] (N, 784), y int64) from the real files, or None when absent."""
    folder = mnist_dir()
    if folder is None:
        return None
    prefix = "train" if split == "train" else "t10k"
    x = read_idx_gz(os.path.join(folder, f"{prefix}-images-idx3-ubyte.gz"))[:limit]
    y = read_idx_gz(os.path.join(folder, f"{prefix}-labels-idx1-ubyte.gz"))[:limit]
    return (x.reshape(len(x), -1) / np.float32(255)).astype(np.float32), y.astype(np.int64)


def input_shape(name):
    return {"lenet": (1, 28, 28), "spiral": (2,)}.get(name, (784,))


def samples(name, count, seed=0):
    """`count` samples for workload `name`: the first MNIST training images when the files are
    there (`source` says so), else uniform random data of the same shape; spiral: N(0, 1) points."""
    rng = np.random.default_rng(seed)
    shape = input_shape(name)
    if name == "spiral":
        return rng.standard_normal((count, 2), dtype=np.float32), rng.integers(0, 3, count), "random"
    real = mnist("train", count)
    if real is not None and len(real[0]) == count:
        return real[0].reshape((count,) + shape), real[1], "mnist"
    return rng.random((count,) + shape, dtype=np.float32), rng.integers(0, 10, count), "random"


def batches(name, count, batch=None, seed=0):
    """One fixed batch sequence, the same for every contender."""
    batch = batch or WORKLOADS[name]
    x, y, _ = samples(name, batch * count, seed)
    return [(x[i:i + batch], y[i:i + batch]) for i in range(0, batch * count, batch)]


# -- contenders ------------------------------------------------------------------------------
def fastnn_model(name, **build):
    from fastnn import zoo
    return zoo.get(name).build(seed=0, **build)


def numpy_blas_controller():
    """threadpoolctl's handle on every BLAS in the process except fastnn's own."""
    from threadpoolctl import ThreadpoolController
    ours = sys.modules["fastnn"].info()["blas_library"] if "fastnn" in sys.modules else None
    controller = ThreadpoolController()
    return controller.select(filepath=[c.filepath for c in controller.lib_controllers
                                       if c.user_api == "blas" and c.filepath != ours])


@contextlib.contextmanager
def thread_limit(who, threads):
    """`who` runs on `threads` threads inside the block."""
    if who == "fastnn":
        import fastnn
        before = fastnn.get_num_threads()
        fastnn.set_num_threads(threads)
        try:
            yield
        finally:
            fastnn.set_num_threads(before)
    elif who == "torch":
        import torch
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)
    elif who in PEERS:  # an optional peer's worker process pins its own threads
        yield
    else:
        with numpy_blas_controller().limit(limits=threads):
            yield


def make(who, spec, weights):
    """(train_step, predict) of a peer built from a fastnn model's spec and weights."""
    if who == "numpy":
        net = numpy_nets.Net.from_spec(spec, weights)
    else:
        from . import torch_nets
        net = torch_nets.Net(spec, weights)
    return net.train_step, net.predict


def contender(who, name):
    """(train_step, predict) for workload `name`, all from fastnn's initial weights (seed 0)."""
    model = fastnn_model(name)
    if who == "fastnn":
        return model.train_step, lambda x: model.predict_raw(x, batch_size=len(x))
    return make(who, spec_of(model), weights_of(model))


def available(who):
    return who != "torch" or have_torch()


# -- kernels alone ---------------------------------------------------------------------------
def kernel_step(who, case, seed=0):
    """A no-argument function running one forward + backward of a LeNet conv/pool layer."""
    x_shape, w_or_pool, need_dx = KERNELS[case]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape, dtype=np.float32)
    if case.startswith("conv"):
        w = rng.standard_normal(w_or_pool, dtype=np.float32) * 0.1
        b = rng.standard_normal(w_or_pool[0], dtype=np.float32)
        y_shape = (x_shape[0], w_or_pool[0], x_shape[2] - w_or_pool[2] + 1, x_shape[3] - w_or_pool[3] + 1)
        dy = rng.standard_normal(y_shape, dtype=np.float32)
        return _conv_step(who, x, w, b, dy, need_dx)
    p = w_or_pool
    dy = rng.standard_normal(x_shape[:2] + (x_shape[2] // p[0], x_shape[3] // p[1]), dtype=np.float32)
    return _pool_step(who, x, p, dy)


def kernel_flops(case):
    """GEMM flops of one forward + backward of a conv case (dX only where training needs it);
    None for pools, which do no multiply-adds."""
    x_shape, w_shape, need_dx = KERNELS[case]
    if not case.startswith("conv"):
        return None
    n, c, h, w = x_shape
    k, _, r, s = w_shape
    macs = k * c * r * s * n * (h - r + 1) * (w - s + 1)
    return 2 * macs * (3 if need_dx else 2)


def _conv_step(who, x, w, b, dy, need_dx):
    if who == "fastnn":  # the raw kernels on a preallocated workspace, as Conv2D calls them
        import fastnn
        from fastnn import _conv
        from fastnn.ops import conv2d_workspace
        ws = conv2d_workspace(x.shape, w.shape, dtype=np.float32)
        y, dx = np.empty(dy.shape, np.float32), (np.empty_like(x) if need_dx else None)
        dw, db = np.empty_like(w), np.empty_like(b)
        fwd, bwd = _conv.conv2d_forward["float"], _conv.conv2d_backward["float"]

        def step():
            t = fastnn.get_num_threads()
            fwd(y, x, w, b, 1, 1, 0, 0, ws["col"], ws["tmp"], t)
            bwd(dx, dw, db, dy, x, w, 1, 1, 0, 0, ws["col"], ws["tmp"], ws["dwt"], t,
                _conv.ColState.COL_FROM_FORWARD)
        return step
    if who == "torch":
        from . import torch_nets
        import torch
        xt, wt, bt = torch_nets.tensors(x, w, b)
        dyt = torch.from_numpy(dy)
        return lambda: torch_nets.conv2d_step(xt, wt, bt, dyt, 1, 0, need_dx)

    def step():
        _, col = numpy_nets.conv2d_forward(x, w, b)
        numpy_nets.conv2d_backward(dy, col, x.shape, w, need_dx=need_dx)
    return step


def _pool_step(who, x, pool, dy):
    if who == "fastnn":
        import fastnn
        from fastnn import _pool
        y, arg, dx = np.empty(dy.shape, np.float32), np.empty(dy.shape, np.int64), np.empty_like(x)
        fwd, bwd = _pool.maxpool2d_forward["float"], _pool.depool2d["float"]

        def step():
            t = fastnn.get_num_threads()
            fwd(y, arg, x, *pool, *pool, t)
            bwd(dx, dy, arg, t)
        return step
    if who == "torch":
        from . import torch_nets
        import torch
        (xt,), dyt = torch_nets.tensors(x), torch.from_numpy(dy)
        return lambda: torch_nets.maxpool2d_step(xt, dyt, pool, pool)

    def step():
        _, idx = numpy_nets.maxpool2d_forward(x, pool, pool)
        numpy_nets.maxpool2d_backward(dy, idx, x.shape, pool, pool)
    return step
