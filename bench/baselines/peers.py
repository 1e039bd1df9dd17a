"""The optional peers (JAX, ONNX Runtime, scikit-learn), each driven in a worker process
(bench/baselines/worker.py) run by the interpreter that has it: its own venv, so none of them
ever enters fastnn's environment, and a fresh runtime per thread count.

    python bench/compare.py --peers jax,onnxruntime,sklearn --peer-python jax=/work/venv-jax/bin/python

A peer whose interpreter cannot import it is skipped with a one-line note, never an error.
Interpreters: --peer-python PEER=PATH, else $FASTNN_PEER_PYTHON_<PEER> (FASTNN_PEER_PYTHON_JAX,
..._ONNXRUNTIME, ..._SKLEARN), else the running one.
"""
import functools
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

from . import spec_of, weights_of

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker.py")
# peer -> the modules its worker imports (all must be importable by its interpreter)
PEERS = {"jax": ("jax",), "onnxruntime": ("onnxruntime", "onnx"), "sklearn": ("sklearn", "threadpoolctl")}
INSTALL = {"jax": "pip install jax jaxlib", "onnxruntime": "pip install onnx onnxruntime",
           "sklearn": "pip install scikit-learn"}


def parse_selection(text):
    """'jax,sklearn' -> ['jax', 'sklearn']; ValueError naming an unknown peer."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in PEERS]
    if unknown:
        raise ValueError(f"--peers: unknown peer {unknown[0]!r}; expected a comma-separated subset of "
                         f"{','.join(PEERS)}")
    return names


def parse_pythons(items):
    """['jax=/path/python', ...] -> {peer: path}; ValueError for a malformed or unknown entry."""
    out = {}
    for item in items or []:
        peer, sep, path = item.partition("=")
        if not sep or peer not in PEERS or not path:
            raise ValueError(f"--peer-python: expected PEER=PATH with PEER one of {','.join(PEERS)}, got {item!r}")
        out[peer] = path
    return out


def interpreter(peer, pythons=None):
    return (pythons or {}).get(peer) or os.environ.get(f"FASTNN_PEER_PYTHON_{peer.upper()}") or sys.executable


@functools.lru_cache(maxsize=None)
def availability(peer, python):
    """None when `python` can import the peer's modules, else the one-line note saying why not."""
    check = ("import importlib.util as u, sys; missing = [m for m in sys.argv[1:] if u.find_spec(m) is None]; "
             "print(', '.join(missing)); sys.exit(bool(missing))")
    try:
        proc = subprocess.run([python, "-c", check, *PEERS[peer]], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"note: {peer} skipped: cannot run {python} ({e})"
    if proc.returncode != 0:
        missing = proc.stdout.strip() or ", ".join(PEERS[peer])
        return (f"note: {peer} skipped: {python} cannot import {missing} "
                f"({INSTALL[peer]} in a benchmark venv, then --peer-python {peer}=VENV/bin/python)")
    return None


def write_spec(model, folder):
    """spec.json and weights.npz of a fastnn model, plus model.onnx when fastnn's own exporter
    (fastnn.onnx, with onnx installed) is importable here: ONNX Runtime then runs fastnn's
    export, else the worker builds the same graph itself (baselines.onnx_nets)."""
    with open(os.path.join(folder, "spec.json"), "w") as f:
        json.dump(spec_of(model), f)
    np.savez(os.path.join(folder, "weights.npz"), *weights_of(model))
    try:
        from fastnn.onnx import to_onnx
        to_onnx(model, os.path.join(folder, "model.onnx"))
    except ImportError:  # no onnx here (or an older fastnn): the worker builds the graph
        pass


class PeerError(RuntimeError):
    """The worker could not build the peer for this workload, or died."""


class Worker:
    """One peer x workload x thread count in its own process; `train_modes` and `infer_modes`
    say what it offers. Use as a context manager (the process ends on exit)."""

    def __init__(self, peer, model, name, threads, steps, measure_seconds, python=None):
        self.peer, self._dir = peer, tempfile.TemporaryDirectory(prefix=f"fastnn-{peer}-")
        write_spec(model, self._dir.name)
        # stderr to a file: a pipe nobody reads would block a chatty worker (XLA's warnings)
        self._stderr = open(os.path.join(self._dir.name, "stderr.txt"), "w+")
        self.proc = subprocess.Popen(
            [python or sys.executable, WORKER, peer, name, str(threads), self._dir.name, str(steps),
             str(measure_seconds)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True)
        hello = self._read()
        self.train_modes, self.infer_modes = hello["train"], hello["infer"]
        self.versions = hello["versions"]

    @property
    def pid(self):
        return self.proc.pid

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            self._stderr.seek(0)
            err = self._stderr.read().strip().splitlines()
            self.close()
            raise PeerError(f"{self.peer} worker exited {self.proc.returncode}: {err[-1] if err else 'no message'}")
        answer = json.loads(line)
        if "error" in answer:
            self.close()
            raise PeerError(f"{self.peer}: {answer['error']}")
        return answer

    def ask(self, **request):
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def train(self, mode):
        """Seconds per step of `mode` over the workload's batches (one measurement)."""
        return self.ask(op="train", mode=mode)["seconds"]

    def infer(self, mode, batch):
        """Seconds per predict call at `batch` (one measurement)."""
        return self.ask(op="infer", mode=mode, batch=batch)["seconds"]

    def check(self, mode, out, **arrays):
        """Trains on xs/ys (one step per batch) or predicts x; returns what the worker wrote."""
        data = os.path.join(self._dir.name, "check.npz")
        np.savez(data, **arrays)
        self.ask(op="check", mode=mode, data=data, out=out)
        return dict(np.load(out))

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()
        self._dir.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
