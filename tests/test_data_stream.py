"""The external shuffler and the streaming readers."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from fastnn.data import IdxBatches, ShuffledFileError, ShuffledStream, write_idx, write_shuffled

ROWS = COLS = 16


def make_source(folder, n):
    """Images whose first two pixels encode their index; label = index % 10."""
    index = np.arange(n)
    images = np.random.default_rng(0).integers(0, 256, (n, ROWS, COLS)).astype(np.uint8)
    images[:, 0, 0], images[:, 0, 1] = index % 256, index // 256
    write_idx(folder / "img.gz", images)
    write_idx(folder / "lab.gz", (index % 10).astype(np.uint8))
    return folder / "img.gz", folder / "lab.gz"


def indices(x):
    """Source indices of a batch of images scaled to [0, 1]."""
    pix = np.rint(x.reshape(len(x), -1)[:, :2] * 255).astype(np.int64)
    return pix[:, 0] + 256 * pix[:, 1]


def read_all(path, **kw):
    with ShuffledStream(path, 64, **kw) as stream:
        out = []
        for epoch in stream.remaining_epochs():
            got = [(indices(x), y.copy()) for x, y in stream.iter_epoch(epoch)]
            out.append((np.concatenate([g[0] for g in got]), np.concatenate([g[1] for g in got])))
        return out


@pytest.fixture(scope="module")
def shuffled(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shuf")
    images, labels = make_source(folder, 3000)
    # 3000 records of 257 bytes, 1 MiB limit: several buckets per epoch.
    write_shuffled(images, labels, folder / "s.bin", epochs=3, seed=7, memory_limit=2**20)
    return folder, images, labels


def test_each_epoch_is_a_permutation_with_matching_labels(shuffled):
    folder, _, _ = shuffled
    epochs = read_all(folder / "s.bin")
    assert len(epochs) == 3
    for idx, labels in epochs:
        assert sorted(idx) == list(range(3000))
        np.testing.assert_array_equal(labels, idx % 10)
    assert not np.array_equal(epochs[0][0], epochs[1][0])
    assert not np.array_equal(epochs[1][0], epochs[2][0])
    assert not np.array_equal(epochs[0][0], np.arange(3000))


def test_same_seed_same_bytes_other_seed_differs(shuffled, tmp_path):
    folder, images, labels = shuffled
    write_shuffled(images, labels, tmp_path / "again.bin", epochs=3, seed=7, memory_limit=2**20)
    assert (tmp_path / "again.bin").read_bytes() == (folder / "s.bin").read_bytes()
    write_shuffled(images, labels, tmp_path / "other.bin", epochs=3, seed=8, memory_limit=2**20)
    assert (tmp_path / "other.bin").read_bytes() != (folder / "s.bin").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.bin", "other.bin"]  # no temp files


def test_start_resumes_at_exactly_the_next_record(shuffled):
    folder, _, _ = shuffled
    full = np.concatenate([e[0] for e in read_all(folder / "s.bin")])
    with ShuffledStream(folder / "s.bin", 64) as stream:
        batches = stream.iter_epoch(0)
        for _ in range(5):
            next(batches)
        saved = stream.position_index
        assert saved == 5 * 64 and stream.position == (0, 320)
        batches.close()
    for start in (saved, 3000, 4321):
        resumed = np.concatenate([e[0] for e in read_all(folder / "s.bin", start=start)])
        np.testing.assert_array_equal(resumed, full[start:])


def test_shards_are_disjoint_and_cover_each_epoch(shuffled):
    folder, _, _ = shuffled
    parts = [read_all(folder / "s.bin", shard=(rank, 3)) for rank in range(3)]
    for epoch in range(3):
        joined = np.concatenate([p[epoch][0] for p in parts])
        assert sorted(joined) == list(range(3000))
    with pytest.raises(ValueError, match="shard"):
        ShuffledStream(folder / "s.bin", 10, shard=(3, 3))


def test_batch_shapes_layouts_and_fixed_buffers(shuffled):
    folder, _, _ = shuffled
    with ShuffledStream(folder / "s.bin", 1000, layout="nchw") as stream:
        assert stream.batches_per_epoch == 3
        seen = [(x, y) for x, y in stream.iter_epoch(0)]
        assert seen[0][0].shape == (1000, 1, ROWS, COLS) and seen[0][0].dtype == np.float32
        assert all(x.base is stream.x or x is stream.x for x, _ in seen)
        assert 0.0 <= seen[0][0].min() and seen[0][0].max() <= 1.0
    with ShuffledStream(folder / "s.bin", 128, drop_last=True) as stream:
        assert stream.batches_per_epoch == 3000 // 128
        assert sum(1 for _ in stream.iter_epoch(0)) == 3000 // 128


def test_corrupt_body_is_caught_by_the_checksum(shuffled, tmp_path):
    folder, _, _ = shuffled
    data = bytearray((folder / "s.bin").read_bytes())
    data[-1000] ^= 0x40  # inside epoch 2
    (tmp_path / "bad.bin").write_bytes(bytes(data))
    with ShuffledStream(tmp_path / "bad.bin", 100) as stream:
        list(stream.iter_epoch(0))
        with pytest.raises(ShuffledFileError, match="epoch 2"):
            list(stream.iter_epoch(2))


@pytest.mark.parametrize("mutate,word", [
    (lambda b: b[:-1], "truncated"),
    (lambda b: b + b"x", "trailing"),
    (lambda b: b"NOTSHUF\0" + b[8:], "not a fastnn shuffled file"),
    (lambda b: b[:40] + bytes([b[40] ^ 1]) + b[41:], "header checksum"),  # the seed
    (lambda b: b[:24] + (10**12).to_bytes(8, "little") + b[32:], "implausible|truncated"),
    (lambda b: b[:30], "truncated"),
])
def test_bad_headers_are_refused_before_reading(shuffled, tmp_path, mutate, word):
    folder, _, _ = shuffled
    (tmp_path / "h.bin").write_bytes(mutate((folder / "s.bin").read_bytes()))
    with pytest.raises(ShuffledFileError, match=word):
        ShuffledStream(tmp_path / "h.bin", 10)


def test_bad_arguments(shuffled, tmp_path):
    folder, images, labels = shuffled
    with pytest.raises(ValueError, match="epochs"):
        write_shuffled(images, labels, tmp_path / "x", epochs=0)
    with pytest.raises(ValueError, match="memory_limit"):
        write_shuffled(images, labels, tmp_path / "x", epochs=1, memory_limit=1000)
    with pytest.raises(ValueError, match="batch_size"):
        ShuffledStream(folder / "s.bin", 0)
    with pytest.raises(ValueError, match="start"):
        ShuffledStream(folder / "s.bin", 10, start=10**9)
    with pytest.raises(ValueError, match="layout"):
        ShuffledStream(folder / "s.bin", 10, layout="nhwc")
    assert not (tmp_path / "x").exists()


def test_killed_shuffle_leaves_no_file(tmp_path):
    images, labels = make_source(tmp_path, 20000)
    out = tmp_path / "big.bin"
    code = ("import sys; from fastnn.data import write_shuffled; "
            f"write_shuffled({str(images)!r}, {str(labels)!r}, {str(out)!r}, epochs=200, seed=0)")
    proc = subprocess.Popen([sys.executable, "-c", code])
    time.sleep(1.5)
    assert proc.poll() is None, "the shuffle finished before it could be killed; make it bigger"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()


def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def test_streaming_many_epochs_keeps_rss_flat(tmp_path):
    images, labels = make_source(tmp_path, 20000)
    write_shuffled(images, labels, tmp_path / "m.bin", epochs=8, seed=0)
    with ShuffledStream(tmp_path / "m.bin", 100) as stream:
        after = []
        for epoch in stream.remaining_epochs():
            for x, y in stream.iter_epoch(epoch):
                pass
            after.append(rss_mb())
    assert max(after[1:]) - after[1] < 4, after


def test_idx_batches_streams_an_idx_pair(tmp_path):
    images, labels = make_source(tmp_path, 250)
    batches = IdxBatches(images, labels, batch_size=100, layout="nchw")
    got = [(indices(x), y.copy()) for x, y in batches]
    assert [len(g[0]) for g in got] == [100, 100, 50]
    np.testing.assert_array_equal(np.concatenate([g[0] for g in got]), np.arange(250))
    np.testing.assert_array_equal(np.concatenate([g[1] for g in got]), np.arange(250) % 10)
    assert len(list(batches)) == 3  # iterable again
