"""CI's run of bench/sklearn_compare.py: once, on 1,000 images and two epochs, so the script stays
working (`pytest bench --benchmark-disable`). Its numbers come from running the script itself."""
import pytest

pytest.importorskip("sklearn", reason="scikit-learn is optional: pip install 'fastnn[sklearn]'")

import sklearn_compare  # noqa: E402


def test_sklearn_compare_runs_on_small_data(capsys):
    x_train, y_train, x_test, y_test, what = sklearn_compare.mnist(train=1000)
    assert x_train.shape == (1000, 784) and x_train.dtype == "float32" and x_train.max() <= 1
    rows = sklearn_compare.compare(x_train, y_train, x_test[:200], y_test[:200], epochs=2,
                                   threads=(1, 2), settle=0)
    assert [r["threads"] for r in rows] == [1, 2]
    for r in rows:
        assert r["fastnn_seconds"] > 0 and r["sklearn_seconds"] > 0
        assert r["ratio"] == r["sklearn_seconds"] / r["fastnn_seconds"]
        # 20 steps: far above chance (0.1) for both (0.72 and 0.73 measured)
        assert 0.5 < r["fastnn_accuracy"] <= 1 and 0.5 < r["sklearn_accuracy"] <= 1
    assert "sklearn/fastnn" in sklearn_compare.table(rows)


def test_sklearn_compare_command_line(capsys):
    sklearn_compare.main(["--train", "300", "--epochs", "1", "--threads", "1"])
    out = capsys.readouterr().out
    assert "784-50-10" in out and "1 epochs" in out and len(out.strip().splitlines()) == 3
    with pytest.raises(SystemExit):
        sklearn_compare.main(["--epochs", "0"])
