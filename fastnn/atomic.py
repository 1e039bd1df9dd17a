"""Atomic file writes: temp file in the same folder, fsync, rename. A crash leaves either the
old file or the new one, never half of one. The new file gets the mode of the file it
replaces (a 0644 model file stays 0644), or a new file's usual mode (0666 minus the umask),
not the 0600 of a private temp file."""
import contextlib
import os
import stat
import tempfile


@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    """Open a temp file next to `path`; on success it replaces `path`, on error it vanishes."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            os.fchmod(f.fileno(), _mode_for(path))
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _mode_for(path):
    """Permission bits for the file written at `path`: those of the file it replaces, else
    what open() would give a new file."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return 0o666 & ~_umask()


def _umask():
    """The process umask, read without changing it where Linux shows it (os.umask can only
    be read by setting it, which would race with other threads creating files)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def refuse_overwriting_inputs(op, out_name, out_path, **inputs):
    """Raise ValueError when `out_path` is, or resolves to (symlinks, hard links), one of the
    `inputs` ({argument name: path}): writing the output would destroy that input."""
    out = os.fspath(out_path)
    for name, path in inputs.items():
        if path is None:
            continue
        path = os.fspath(path)
        same = os.path.realpath(out) == os.path.realpath(path)
        with contextlib.suppress(OSError):  # a missing file cannot be an existing input
            same = same or os.path.samefile(out, path)
        if same:
            raise ValueError(f"{op}: {out_name} {out!r} is the same file as {name} {path!r}; "
                             f"writing it would destroy the input (choose another {out_name})")
