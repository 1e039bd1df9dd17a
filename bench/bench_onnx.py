"""fastnn `predict` vs ONNX Runtime on the exported LeNet, as pytest-benchmark groups (one per
batch size), so `--benchmark-compare` lines them up; the side-by-side table with ratios is
bench/onnx_compare.py.

    pytest bench/bench_onnx.py --benchmark-only        (real numbers)
    pytest bench/bench_onnx.py --benchmark-disable     (CI: one call each, and a tiny table run)

Skips when onnx/onnxruntime are not installed (pip install "fastnn[onnx]").
"""
import pytest

pytest.importorskip("onnx", reason='the ONNX comparison needs pip install "fastnn[onnx]"')
pytest.importorskip("onnxruntime", reason='the ONNX comparison needs pip install "fastnn[onnx]"')

import onnx_compare  # noqa: E402 - after the skips
from baselines import cases  # noqa: E402

ROUNDS = 10


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from fastnn.onnx import to_onnx
    model = onnx_compare.lenet()
    return model, to_onnx(model, str(tmp_path_factory.mktemp("onnx") / "lenet.onnx"))


@pytest.mark.parametrize("num_threads", onnx_compare.THREADS)
@pytest.mark.parametrize("who", ["fastnn", "onnxruntime"])
@pytest.mark.parametrize("batch", onnx_compare.BATCHES)
def test_lenet_predict(benchmark, exported, batch, who, num_threads):
    benchmark.group = f"onnx-infer-lenet-b{batch}"
    x = cases.samples("lenet", batch)[0]
    with cases.thread_limit("fastnn", num_threads):
        predict = onnx_compare.predictors(*exported, num_threads)[who]
        benchmark.pedantic(lambda: predict(x), rounds=ROUNDS, warmup_rounds=1, iterations=1)
    if not benchmark.disabled:
        benchmark.extra_info.update(threads=num_threads, images=batch,
                                    images_per_s=batch / benchmark.stats.stats.median)


def test_the_comparison_table_runs(capsys):
    """The script end to end on a tiny case: its table has a ratio for each measured pair."""
    rows = onnx_compare.main(["--threads", "1", "--batches", "1", "3", "--repeats", "1"])
    assert [(r["batch"], r["threads"]) for r in rows] == [(1, 1), (3, 1)]
    assert all(v > 0 for r in rows for v in r["images_per_s"].values())
    assert capsys.readouterr().out.count("x  others used") == 2
