"""fastnn.data throughput: the streaming reader (records/s from the page cache) and the external
shuffler (records written/s), on MNIST-shaped synthetic data (28 x 28 uint8 + 1 label byte).

Run: pytest bench/bench_stream.py --benchmark-only   (CI: pytest bench --benchmark-disable,
which uses small files so it stays quick). `records_per_s` in extra_info is the number to read.
"""
import os

import numpy as np
import pytest

from fastnn.data import ShuffledStream, write_idx, write_shuffled

ROWS = COLS = 28


def _records(config):
    """60,000 (one MNIST epoch) when measuring, 3,000 when benchmarks are disabled."""
    return 3000 if config.getoption("benchmark_disable") else 60000


@pytest.fixture(scope="module")
def source(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench_stream")
    n = _records(request.config)
    rng = np.random.default_rng(0)
    write_idx(folder / "img.idx", rng.integers(0, 256, (n, ROWS, COLS), dtype=np.uint8))
    write_idx(folder / "lab.idx", rng.integers(0, 10, n, dtype=np.uint8))
    return folder, n


@pytest.fixture(scope="module")
def shuffled(source):
    folder, n = source
    write_shuffled(folder / "img.idx", folder / "lab.idx", folder / "s.bin", epochs=2, seed=0)
    return folder / "s.bin", n


def _warm_page_cache(path):
    """Read the file once so the timed pass reads from the page cache (the stream drops the
    pages it has read, so every round needs this)."""
    with open(path, "rb", buffering=0) as f:
        while f.read(1 << 22):
            pass


@pytest.mark.benchmark(group="data-stream")
@pytest.mark.parametrize("batch_size", [32, 128, 1000])
def test_stream_records_per_second(benchmark, shuffled, batch_size):
    path, n = shuffled
    stream = ShuffledStream(path, batch_size)

    def setup():
        _warm_page_cache(path)
        stream.position_index = n  # the start of epoch 1, every round

    def one_epoch():
        for x, y in stream.iter_epoch(1):
            pass

    try:
        benchmark.pedantic(one_epoch, setup=setup, rounds=5, iterations=1)
    finally:
        stream.close()
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["records_per_s"] = round(n / benchmark.stats.stats.min)
        benchmark.extra_info["records_per_s_median"] = round(n / benchmark.stats.stats.median)


@pytest.mark.benchmark(group="data-shuffle")
@pytest.mark.parametrize("memory_limit_mib", [64, 8])
def test_shuffle_records_per_second(benchmark, source, tmp_path, memory_limit_mib):
    folder, n = source
    epochs = 4
    out = tmp_path / "out.bin"

    def shuffle():
        write_shuffled(folder / "img.idx", folder / "lab.idx", out, epochs=epochs, seed=1,
                       memory_limit=memory_limit_mib * 2**20)

    benchmark.pedantic(shuffle, rounds=3, iterations=1)
    assert os.path.getsize(out) > epochs * n * (ROWS * COLS + 1)
    if benchmark.stats is not None:
        benchmark.extra_info["records_per_s"] = round(epochs * n / benchmark.stats.stats.min)
