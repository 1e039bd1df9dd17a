"""The external shuffler: permutations, determinism, bounded memory, atomicity, bad arguments.

Also the home of the synthetic source used by test_data_stream.py: each image's first two
pixels encode its index and its label is index % 10, so any record can be traced to its source.
"""
import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from fastnn.data import IdxError, ShuffledStream, write_idx, write_shuffled
from fastnn.data import shuffle as shuffle_module
from fastnn.data.shuffled_format import read_header

ROWS = COLS = 16


def make_source(folder, n, name="", rows=ROWS, cols=COLS):
    """(images, labels) IDX paths of `n` traceable records (see module docstring)."""
    index = np.arange(n)
    images = np.random.default_rng(n).integers(0, 256, (n, rows, cols)).astype(np.uint8)
    images.reshape(n, -1)[:, 0], images.reshape(n, -1)[:, 1] = index % 256, index // 256
    write_idx(folder / f"{name}img.gz", images)
    write_idx(folder / f"{name}lab.gz", (index % 10).astype(np.uint8))
    return folder / f"{name}img.gz", folder / f"{name}lab.gz"


def indices(x):
    """Source indices of a batch of images scaled to [0, 1]."""
    pix = np.rint(x.reshape(len(x), -1)[:, :2] * 255).astype(np.int64)
    return pix[:, 0] + 256 * pix[:, 1]


def file_records(path):
    """(epochs, records, record_bytes) uint8 view of a shuffled file's body, read directly."""
    with open(path, "rb") as f:
        layout, _ = read_header(f, str(path), os.path.getsize(path))
    body = np.fromfile(path, np.uint8, offset=layout.data_offset)
    return body.reshape(layout.epochs, layout.records_per_epoch, layout.record_bytes)


def record_indices(records):
    return records[..., 0].astype(np.int64) + 256 * records[..., 1].astype(np.int64)


N, SMALL_LIMIT = 3000, 2**18   # 3000 records of 257 bytes, 256 KiB: 8 buckets per epoch


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shuffle")
    images, labels = make_source(folder, N)
    write_shuffled(images, labels, folder / "s.bin", epochs=3, seed=7, memory_limit=SMALL_LIMIT)
    return folder, images, labels


def test_the_small_limit_forces_several_buckets(source):
    folder, _, _ = source
    with open(folder / "s.bin", "rb") as f:
        layout, _ = read_header(f, "s.bin", os.path.getsize(folder / "s.bin"))
    assert shuffle_module._Plan(layout, SMALL_LIMIT).buckets >= 4


def test_each_epoch_is_a_permutation_with_labels_still_matching(source):
    folder, _, _ = source
    records = file_records(folder / "s.bin")
    idx = record_indices(records)
    for epoch in range(3):
        assert sorted(idx[epoch]) == list(range(N))
        np.testing.assert_array_equal(records[epoch, :, -1], idx[epoch] % 10)
    assert not np.array_equal(idx[0], idx[1]) and not np.array_equal(idx[1], idx[2])
    assert not np.array_equal(idx[0], np.arange(N))


def test_same_seed_same_bytes_at_any_memory_limit_other_seed_differs(source, tmp_path):
    folder, images, labels = source
    reference = (folder / "s.bin").read_bytes()
    for limit in (SMALL_LIMIT, 64 * 2**20):  # 8 buckets and 1 bucket: the same sort by key
        write_shuffled(images, labels, tmp_path / "again.bin", epochs=3, seed=7, memory_limit=limit)
        assert (tmp_path / "again.bin").read_bytes() == reference
    write_shuffled(images, labels, tmp_path / "other.bin", epochs=3, seed=8, memory_limit=SMALL_LIMIT)
    assert (tmp_path / "other.bin").read_bytes() != reference
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.bin", "other.bin"]  # no temp files


def test_the_permutation_is_uniform(tmp_path, monkeypatch):
    """4 records, 600 epochs, forced through 4 buckets: all 24 orders about equally often."""
    real_init = shuffle_module._Plan.__init__

    def four_buckets(self, layout, limit):
        real_init(self, layout, limit)
        self.bucket_bits, self.buckets = 2, 4
        self.epochs_per_pass = 64

    monkeypatch.setattr(shuffle_module._Plan, "__init__", four_buckets)
    images, labels = make_source(tmp_path, 4, rows=2, cols=2)
    write_shuffled(images, labels, tmp_path / "u.bin", epochs=600, seed=3)
    orders = record_indices(file_records(tmp_path / "u.bin")) @ np.array([64, 16, 4, 1])
    counts = np.unique(orders, return_counts=True)[1]
    assert len(counts) == 24
    chi2 = ((counts - 25.0) ** 2 / 25.0).sum()
    assert chi2 < 49.7, (chi2, counts)  # chi-square, 23 degrees of freedom, p = 0.001


def test_bad_arguments_raise_value_error_naming_the_argument(source, tmp_path):
    folder, images, labels = source
    out = tmp_path / "x.bin"
    cases = [
        (dict(epochs=0), "epochs"), (dict(epochs=2.0), "epochs"), (dict(epochs=1, seed=-1), "seed"),
        (dict(epochs=1, memory_limit=1000), "memory_limit"),
        (dict(epochs=1, memory_limit=2**20, temp_dir=tmp_path / "nowhere"), "temp_dir"),
    ]
    for kwargs, word in cases:
        with pytest.raises(ValueError, match=word):
            write_shuffled(images, labels, out, **kwargs)
    with pytest.raises(ValueError, match="images_path.*missing.gz"):
        write_shuffled(tmp_path / "missing.gz", labels, out, epochs=1)
    with pytest.raises(ValueError, match="out_path"):
        write_shuffled(images, labels, tmp_path / "no" / "x.bin", epochs=1)
    other_images, _ = make_source(tmp_path, 10, name="ten-")
    with pytest.raises(IdxError, match="lab.gz"):  # 3000 labels for 10 images
        write_shuffled(other_images, labels, out, epochs=1)
    assert not out.exists()
    assert not any(p.name.startswith(".fastnn-shuffle") for p in tmp_path.iterdir())


def test_peak_memory_stays_under_the_limit(tmp_path):
    """A child process shuffles 20000 records (5 MiB an epoch) with a 1 MiB limit; its peak RSS
    (VmHWM, reset after a warm-up that pages in the code) grows by less than the limit plus
    1 MiB of allocator slack (measured: 0.0-1.05 MiB), far below one epoch's 5 MiB."""
    images, labels = make_source(tmp_path, 20000)
    tiny_images, tiny_labels = make_source(tmp_path, 300, name="tiny-")
    code = textwrap.dedent(f"""
        from fastnn.data import write_shuffled
        def status(key):
            with open("/proc/self/status") as f:
                return next(int(l.split()[1]) * 1024 for l in f if l.startswith(key))
        write_shuffled({str(tiny_images)!r}, {str(tiny_labels)!r}, {str(tmp_path / 'w.bin')!r},
                       epochs=2, seed=0, memory_limit=2**20)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak (VmHWM) to the current RSS
        before = status("VmRSS")
        write_shuffled({str(images)!r}, {str(labels)!r}, {str(tmp_path / 'm.bin')!r},
                       epochs=2, seed=0, memory_limit=2**20)
        print(status("VmHWM") - before)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    growth = int(done.stdout)
    assert growth < 2 * 2**20, f"peak RSS grew by {growth / 2**20:.2f} MiB with a 1 MiB limit"
    assert len(file_records(tmp_path / "m.bin")) == 2


def test_killed_shuffle_leaves_no_file_and_the_next_run_sweeps_its_temp_folder(tmp_path):
    images, labels = make_source(tmp_path, 20000)
    out = tmp_path / "big.bin"
    code = ("from fastnn.data import write_shuffled; "
            f"write_shuffled({str(images)!r}, {str(labels)!r}, {str(out)!r}, epochs=400, seed=0)")
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 20
    while not any(p.name.startswith(".fastnn-shuffle-") for p in tmp_path.iterdir()):
        assert proc.poll() is None and time.monotonic() < deadline, "the shuffle never started"
        time.sleep(0.02)
    time.sleep(0.3)  # now it is writing bucket files
    assert proc.poll() is None, "the shuffle finished before it could be killed; make it bigger"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    assert any(p.name.startswith(f".fastnn-shuffle-{proc.pid}-") for p in tmp_path.iterdir())
    write_shuffled(images, labels, tmp_path / "next.bin", epochs=1, seed=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.gz", "lab.gz", "next.bin"]


def test_real_mnist_two_epochs(tmp_path):
    from support import mnist_dir
    from fastnn.data import mnist_files, read_labeled
    files = mnist_files(mnist_dir())
    _, labels = read_labeled(files["train_images"], files["train_labels"])
    write_shuffled(files["train_images"], files["train_labels"], tmp_path / "m.bin", epochs=2, seed=1)
    records = file_records(tmp_path / "m.bin")
    assert records.shape == (2, 60000, 785)
    for epoch in range(2):
        np.testing.assert_array_equal(np.bincount(records[epoch, :, -1]), np.bincount(labels))
    with ShuffledStream(tmp_path / "m.bin", 1000) as stream:
        assert stream.batches_per_epoch == 60 and math.isclose(stream.x.nbytes, 1000 * 784 * 4)
        assert sum(len(y) for y in (y for _, y in stream.iter_epoch(1))) == 60000
