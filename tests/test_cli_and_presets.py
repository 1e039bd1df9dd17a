"""The presets learn (short runs on the bundled subset), and the CLI: exit codes, JSON, files."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fastnn
from fastnn import datasets, zoo
from fastnn.cli import main
from fastnn.commands import _scaled

from support import mnist_dir


@pytest.fixture(scope="module")
def subset():
    (x, y), (xt, yt) = datasets.mnist_subset()
    return (x, y), (xt, yt)


@pytest.mark.parametrize("name,epochs,floor", [("mlp", 3, 0.80), ("nielsen", 3, 0.80), ("lenet", 1, 0.80)])
def test_mnist_presets_learn_on_the_bundled_subset(subset, name, epochs, floor):
    preset = zoo.get(name)
    (x, y), (xt, yt) = subset
    model = preset.build(seed=0)
    model.fit(_scaled(x, preset.layout), y, epochs=epochs, batch_size=preset.batch_size, seed=0, verbose=0)
    assert model.evaluate(_scaled(xt, preset.layout), yt)["accuracy"] >= floor


def test_spiral_preset_reaches_95_percent_within_300_epochs():
    x, y = datasets.spiral(seed=0)
    preset = zoo.get("spiral")
    history = preset.build(seed=0).fit(x, y, epochs=300, batch_size=30, seed=0, verbose=0)
    assert max(history.epoch_train_accuracy) >= 0.95


@pytest.mark.parametrize("optimizer", ["sgd", "random-search"])
def test_twoclass_preset_gets_below_loss_threshold(optimizer):
    x, y = datasets.two_class_grid(n=100, seed=0)
    model = zoo.get("twoclass").build(seed=0, optimizer=optimizer)
    history = model.fit(x / 5 - 1, y, epochs=5000, batch_size=100, verbose=0,
                        callbacks=[fastnn.EarlyStopping(loss_threshold=0.2)])
    assert history.step_loss[-1] < 0.2


def run_cli(*args, env=None):
    """Run `fastnn ...` in a subprocess: (exit code, stdout, stderr)."""
    full_env = dict(os.environ, **(env or {}))
    proc = subprocess.run([sys.executable, "-m", "fastnn.cli", *args], capture_output=True, text=True,
                          env=full_env, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


def test_train_prints_epoch_lines_and_a_json_summary(tmp_path):
    code, out, err = run_cli("train", "--model", "mlp", "--epochs", "2", "--json", "--out",
                             str(tmp_path / "m.fastnn"), env={"FASTNN_DATA": str(tmp_path)})
    assert code == 0, err
    lines = out.strip().splitlines()
    assert any(line.startswith("Epoch 1: ") and " / 1000" in line for line in lines)
    summary = json.loads(lines[-1])
    for key in ("model", "epochs", "batch_size", "threads", "seconds", "samples_per_second", "train_loss",
                "train_accuracy", "test_accuracy", "best_test_accuracy", "peak_rss_mb"):
        assert key in summary
    assert summary["model"] == "mlp" and summary["epochs"] == 2 and summary["test_accuracy"] > 0.8
    assert "bundled subset" in out  # FASTNN_DATA had no MNIST: the notice says so
    code, out, _ = run_cli("evaluate", str(tmp_path / "m.fastnn"), "--json", env={"FASTNN_DATA": str(tmp_path)})
    result = json.loads(out.strip().splitlines()[-1])
    assert result["test_accuracy"] == pytest.approx(summary["test_accuracy"])
    assert np.array(result["confusion"]).sum() == 1000


def test_train_spiral_writes_a_decision_plot(tmp_path):
    pytest.importorskip("matplotlib")
    code, out, err = run_cli("train", "--model", "spiral", "--json", "--quiet", "--plot", str(tmp_path / "s.png"))
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["train_accuracy"] >= 0.95
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args,word", [
    (["train", "--model", "resnet"], "invalid choice"),
    (["train", "--epochs", "-3"], "positive integer"),
    (["train", "--lr", "abc"], "positive number"),
    (["train", "--model", "mlp", "--data", "/nonexistent/folder"], "missing MNIST files"),
    (["train", "--model", "mlp", "--stream", "/nonexistent/file"], "No such file"),
    (["evaluate", "/nonexistent/model"], "No such file"),
    (["shuffle", "--epochs", "0", "--out", "x"], "positive integer"),
])
def test_bad_arguments_give_one_line_and_exit_2(args, word):
    code, out, err = run_cli(*args)
    assert code == 2
    assert word in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_malformed_data_folder_is_a_clean_error(tmp_path):
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (tmp_path / name).write_bytes(b"\0\0\x08\x03garbage")
    code, _, err = run_cli("train", "--model", "mlp", "--data", str(tmp_path))
    assert code == 2 and "truncated" in err and "Traceback" not in err


def test_evaluate_rejects_a_foreign_file(tmp_path):
    (tmp_path / "junk").write_bytes(b"junk")
    code, _, err = run_cli("evaluate", str(tmp_path / "junk"))
    assert code == 2 and "not a readable fastnn model" in err


def test_shuffle_then_train_from_the_stream(tmp_path):
    (x, y), (xt, yt) = datasets.mnist_subset()
    from fastnn.data import write_idx
    for name, arr in (("train-images-idx3-ubyte", x), ("train-labels-idx1-ubyte", y.astype(np.uint8)),
                      ("t10k-images-idx3-ubyte", xt), ("t10k-labels-idx1-ubyte", yt.astype(np.uint8))):
        write_idx(tmp_path / name, arr)
    code, out, err = run_cli("shuffle", "--data", str(tmp_path), "--epochs", "2", "--seed", "1",
                             "--out", str(tmp_path / "s.bin"))
    assert code == 0, err
    code, out, err = run_cli("train", "--model", "mlp", "--stream", str(tmp_path / "s.bin"), "--data",
                             str(tmp_path), "--json", "--quiet")
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["epochs"] == 2 and summary["test_accuracy"] > 0.8


SIMD_BUILDS = ("avx512f+fma", "avx2+fma", "baseline")


def test_info_and_no_command():
    code, out, _ = run_cli("info")
    assert code == 0 and "openmp" in out and "blas" in out
    assert "small_gemm_simd" in out  # one build, or 'dot X, axpy Y' (the shapes may differ)
    assert all(part.split()[-1] in SIMD_BUILDS for part in fastnn.info()["small_gemm_simd"].split(", "))
    assert "direct_conv_simd" in out and fastnn.info()["direct_conv_simd"] in SIMD_BUILDS
    assert "isa" in out and fastnn.info()["isa"] in ("avx512", "avx2", "baseline")
    assert main([]) == 2


@pytest.mark.slow
@pytest.mark.parametrize("name,argv,target", [
    ("mlp", [], 0.970), ("nielsen", [], 0.950), ("nielsen", ["--hidden", "100"], 0.960), ("lenet", [], 0.990)])
def test_full_mnist_reaches_the_preset_targets(name, argv, target):
    data = mnist_dir()
    code, out, err = run_cli("train", "--model", name, *argv, "--json", "--quiet", "--data", data)
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["best_test_accuracy"] >= target
