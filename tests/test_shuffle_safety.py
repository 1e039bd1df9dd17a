"""Issue 16, items 4 and 6: a shuffle never overwrites its input, and its stale-folder sweep
removes only folders whose lock no live process holds (not inferred from PIDs)."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fastnn.data import read_idx, write_idx, write_shuffled
from fastnn.data import shuffle as shuffle_module


@pytest.fixture
def source(tmp_path):
    rng = np.random.default_rng(0)
    images, labels = tmp_path / "img.gz", tmp_path / "lab.gz"
    write_idx(images, rng.integers(0, 256, (50, 4, 4), dtype=np.uint8))
    write_idx(labels, rng.integers(0, 10, 50, dtype=np.uint8))
    return images, labels


@pytest.mark.parametrize("how", ["same-path", "relative", "symlink", "hard-link"])
@pytest.mark.parametrize("which", ["images_path", "labels_path"])
def test_an_output_that_is_an_input_is_refused_and_the_input_kept(tmp_path, source, how, which):
    target = source[0] if which == "images_path" else source[1]
    before = target.read_bytes()
    out = {"same-path": target, "relative": os.path.relpath(target),
           "symlink": tmp_path / "link.bin", "hard-link": tmp_path / "hard.bin"}[how]
    if how == "symlink":
        os.symlink(target, out)
    elif how == "hard-link":
        os.link(target, out)
    with pytest.raises(ValueError, match=f"out_path .* is the same file as {which}"):
        write_shuffled(*source, out, epochs=1)
    assert target.read_bytes() == before
    read_idx(target)  # still a valid IDX file


def test_a_different_output_is_written(tmp_path, source):
    write_shuffled(*source, tmp_path / "s.bin", epochs=1)
    assert (tmp_path / "s.bin").stat().st_size > 50 * 17


def _holder(folder, name):
    """A child that makes work folder `name` in `folder`, holds its lock and waits for stdin."""
    code = textwrap.dedent(f"""
        import fcntl, os, sys
        work = os.path.join({str(folder)!r}, {name!r})
        os.mkdir(work)
        lock = os.open(os.path.join(work, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(lock, fcntl.LOCK_EX)
        print("locked", flush=True)
        sys.stdin.read()
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_folder_locked_by_a_live_process_survives_the_sweep(tmp_path, source):
    # A PID that is not alive here, as a shuffle in another PID namespace (container) looks.
    name = f"{shuffle_module._WORK_PREFIX}4194303-live"
    holder = _holder(tmp_path, name)
    try:
        (tmp_path / name / "out.tmp").write_bytes(b"partial output")
        write_shuffled(*source, tmp_path / "s.bin", epochs=1)
        assert (tmp_path / name / "out.tmp").read_bytes() == b"partial output"
    finally:
        holder.communicate("")
    assert holder.returncode == 0


def test_a_folder_whose_lock_is_free_is_swept(tmp_path, source):
    name = f"{shuffle_module._WORK_PREFIX}{os.getpid()}-dead"  # even a live PID: the lock decides
    holder = _holder(tmp_path, name)
    holder.kill()
    holder.wait()
    assert (tmp_path / name / "lock").exists()
    write_shuffled(*source, tmp_path / "s.bin", epochs=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.gz", "lab.gz", "s.bin"]


def test_a_folder_without_a_lock_file_is_not_proven_stale(tmp_path, source):
    (tmp_path / f"{shuffle_module._WORK_PREFIX}1-old").mkdir()
    write_shuffled(*source, tmp_path / "s.bin", epochs=1)
    assert (tmp_path / f"{shuffle_module._WORK_PREFIX}1-old").is_dir()
