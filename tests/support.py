"""Shared test constants and helpers (imported as `support`; conftest.py holds fixtures)."""
import os

import numpy as np
import pytest

# Per-dtype tolerances for kernel-vs-reference checks.
TOL = {np.float32: dict(rtol=1e-4, atol=1e-5), np.float64: dict(rtol=1e-10, atol=1e-12)}


def mnist_dir():
    """Full MNIST from FASTNN_DATA, or skip with the reason."""
    path = os.environ.get("FASTNN_DATA")
    if not path or not os.path.exists(os.path.join(path, "train-images-idx3-ubyte.gz")):
        pytest.skip("full MNIST not found: set FASTNN_DATA to a folder with the four IDX files "
                    "(e.g. ../shared/data/mnist)")
    return path
