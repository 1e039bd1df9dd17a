import os

import numpy as np
import pytest

import fastnn

# Per-dtype tolerances for kernel-vs-reference checks.
TOL = {np.float32: dict(rtol=1e-4, atol=1e-5), np.float64: dict(rtol=1e-10, atol=1e-12)}


@pytest.fixture(params=[np.float32, np.float64], ids=["f32", "f64"])
def dtype(request):
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def threads():
    """Restores the thread count a test changed."""
    before = fastnn.get_num_threads()
    yield fastnn.set_num_threads
    fastnn.set_num_threads(before)


def mnist_dir():
    """Full MNIST from FASTNN_DATA, or skip with the reason."""
    path = os.environ.get("FASTNN_DATA")
    if not path or not os.path.exists(os.path.join(path, "train-images-idx3-ubyte.gz")):
        pytest.skip("full MNIST not found: set FASTNN_DATA to a folder with the four IDX files "
                    "(e.g. ../shared/data/mnist)")
    return path
