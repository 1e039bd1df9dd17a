"""fastnn.plot writes non-empty PNGs with the Agg backend; fastnn.metrics.confusion_matrix."""
import os
import subprocess
import sys

import numpy as np
import pytest

from fastnn.metrics import accuracy, confusion_matrix

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def plot():
    mpl = pytest.importorskip("matplotlib", reason="matplotlib not installed (pip install fastnn[plot])")
    mpl.use("Agg")
    from fastnn import plot
    return plot


def assert_png(path):
    assert os.path.getsize(path) > 1000
    with open(path, "rb") as f:
        assert f.read(8) == PNG_MAGIC
    stray = [n for n in os.listdir(os.path.dirname(path)) if n.startswith(".")]
    assert stray == [], f"temp files left behind: {stray}"


HISTORY = {"step_loss": list(np.linspace(2.3, 0.3, 60)),
           "epoch_train_loss": [1.5, 0.8, 0.4], "epoch_val_loss": [1.6, 0.9, 0.6],
           "epoch_train_accuracy": [0.6, 0.8, 0.9], "epoch_val_accuracy": [0.55, 0.75, 0.85]}


def test_history_from_dict(plot, tmp_path):
    path = tmp_path / "history.png"
    assert plot.plot_history(HISTORY, path) == os.fspath(path)
    assert_png(path)


def test_history_from_object_with_as_dict_and_partial_keys(plot, tmp_path):
    class History:
        def as_dict(self):
            return {"step_loss": [1.0, 0.5], "epoch_train_accuracy": [0.7]}
    assert_png(plot.plot_history(History(), tmp_path / "h.png"))


def test_history_rejects_empty(plot, tmp_path):
    with pytest.raises(ValueError, match="nothing to plot"):
        plot.plot_history({"other": [1]}, tmp_path / "h.png")
    assert not (tmp_path / "h.png").exists()


def test_decision_regions(plot, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (60, 2)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0)
    calls = []

    def predict(grid):
        calls.append(grid)
        return (grid[:, 0] > 0).astype(np.int64) + (grid[:, 1] > 0)

    assert_png(plot.plot_decision_regions(predict, x, y, tmp_path / "regions.png", resolution=50))
    assert len(calls) == 1 and calls[0].shape == (2500, 2) and calls[0].dtype == np.float32


def test_decision_regions_checks_shapes(plot, tmp_path):
    with pytest.raises(ValueError, match=r"x must be \(N, 2\)"):
        plot.plot_decision_regions(lambda g: g[:, 0], np.zeros((5, 3)), np.zeros(5), tmp_path / "r.png")


def test_confusion(plot, tmp_path):
    cm = confusion_matrix([0, 1, 2, 2, 1, 0, 9], [0, 1, 2, 1, 1, 0, 3], 10)
    assert_png(plot.plot_confusion(cm, tmp_path / "cm.png"))
    assert_png(plot.plot_confusion(cm[:3, :3], tmp_path / "cm3.png", class_names=["a", "b", "c"]))
    with pytest.raises(ValueError, match="class_names"):
        plot.plot_confusion(cm, tmp_path / "x.png", class_names=["a"])


def test_confusion_matrix_counts():
    cm = confusion_matrix(np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 0, 2]), 3)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    assert cm.sum() == 6
    assert accuracy([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2]) == pytest.approx(4 / 6)


def test_confusion_matrix_errors():
    with pytest.raises(ValueError, match="num_classes=3"):
        confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(ValueError, match="y_pred has 1"):
        confusion_matrix([0, 1], [0], 3)
    with pytest.raises(ValueError, match="integer"):
        confusion_matrix([0.5], [0], 3)


def test_core_does_not_import_matplotlib():
    code = ("import sys, fastnn, fastnn.plot, fastnn.metrics, fastnn.datasets; "
            "assert 'matplotlib' not in sys.modules, 'matplotlib imported at import time'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_matplotlib_message(monkeypatch, tmp_path):
    from fastnn import plot
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib...` fail
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"fastnn\[plot\]"):
        plot.plot_history(HISTORY, tmp_path / "h.png")
