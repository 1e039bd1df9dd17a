"""One rank of a distributed test; run by tests/test_distributed.py under mpiexec.

    mpiexec -n K python tests/distributed_child.py SCENARIO OUT_DIR [ARGS...]

Each scenario writes what its rank saw to OUT_DIR/rank{r}.npz (or fails in the way the test
expects); the test compares those files with numpy references computed in the pytest process.
"""
import json
import os
import signal
import sys
import time

import numpy as np

import fastnn
from fastnn import zoo
from fastnn.datasets import mnist_subset
from fastnn.distributed import DataParallel, DistributedError
from fastnn.model import load_checkpoint
from fastnn.train.callbacks import Callback, Checkpoint


def small_model(seed, optimizer=None):
    return fastnn.Sequential([fastnn.Dense(7, "relu"), fastnn.Dense(3)], loss=fastnn.SoftmaxCrossEntropy(),
                             optimizer=optimizer or fastnn.SGD(lr=0.1, momentum=0.9), input_shape=(5,), seed=seed)


def save(out, ranks, **arrays):
    np.savez(os.path.join(out, f"rank{ranks.rank}.npz"), **arrays)


def broadcast(ranks, out):
    """Different seeds and optimizer state per rank; after start() every rank has rank 0's."""
    sgd = small_model(seed=100 + ranks.rank)
    sgd.optimizer.velocity[...] = ranks.rank + 1
    adam = small_model(seed=200 + ranks.rank, optimizer=fastnn.Adam())
    adam.optimizer.m[...], adam.optimizer.v[...], adam.optimizer.t = ranks.rank, 2 * ranks.rank, 10 + ranks.rank
    before = [sgd.params.copy(), sgd.optimizer.velocity.copy(), adam.params.copy(), adam.optimizer.m.copy(),
              adam.optimizer.v.copy(), np.array(adam.optimizer.t)]
    ranks.start(sgd)
    ranks.start(adam)
    after = [sgd.params, sgd.optimizer.velocity, adam.params, adam.optimizer.m, adam.optimizer.v,
             np.array(adam.optimizer.t)]
    save(out, ranks, **{f"before{i}": a for i, a in enumerate(before)}, **{f"after{i}": a for i, a in enumerate(after)})


def average(ranks, out, sizes, length):
    """Rank r's gradient is rng(r).standard_normal(length) for a batch of sizes[r] samples."""
    n = int(sizes.split(",")[ranks.rank])
    grads = np.random.default_rng(ranks.rank).standard_normal(int(length)).astype(np.float32)
    found = grads.copy()
    ranks.average_gradients(found, n)  # N found by the method's own Allreduce
    totals = ranks.agree(loss_sum=0.5 + ranks.rank, count=n, correct=ranks.rank * 3, stop=ranks.rank == 1)
    given = grads.copy()
    ranks.average_gradients(given, n, totals.count)
    no_correct = ranks.agree(1.0, n, None, False)
    save(out, ranks, found=found, given=given, totals=np.array(totals[:3], np.float64),
         stop=np.array(totals.stop), no_correct=np.array(no_correct.correct is None))


def checksum(ranks, out):
    """Identical after start(); one ulp changed on the last rank must be detected everywhere."""
    model = small_model(seed=ranks.rank)
    ranks.start(model)
    ranks.check_params(model, "the start")
    if ranks.rank == ranks.world - 1:
        model.params[3] = np.nextafter(model.params[3], np.float32(np.inf))
    try:
        ranks.check_params(model, "epoch 1")
        message = ""
    except DistributedError as exc:
        message = str(exc)
    save(out, ranks, message=np.array(message))


def fail(ranks, out, how):
    """Rank 1 fails (exception or SIGKILL) while the others wait in an Allreduce."""
    model = small_model(seed=0)
    ranks.start(model)
    if ranks.rank == 1:
        time.sleep(0.5)  # the others are inside the Allreduce by now
        if how == "raise":
            raise ValueError("boom from rank 1")
        os.kill(os.getpid(), signal.SIGKILL)
    ranks.average_gradients(model.grads, 1)
    print("rank", ranks.rank, "passed the Allreduce", flush=True)  # must never be printed


def random_search(ranks, out):
    ranks.start(small_model(seed=0, optimizer=fastnn.RandomSearch(step=0.1, seed=0)))


def single(ranks, out):
    """World of 1 (no launcher): the primitives work and check their arguments."""
    model = small_model(seed=0)
    ranks.start(model)
    grads = np.arange(6, dtype=np.float32)
    ranks.average_gradients(grads, 2, 4)
    errors = []
    for call in (lambda: ranks.average_gradients([1.0, 2.0], 1),
                 lambda: ranks.average_gradients(grads, 5, 4),
                 lambda: DataParallel(errors="silent")):
        try:
            call()
            errors.append("no error")
        except (TypeError, ValueError) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
    save(out, ranks, grads=grads, world=np.array(ranks.world), threads=np.array(fastnn.get_num_threads()),
         errors=np.array(errors))


def subset(model, samples):
    """The first `samples` images of the bundled MNIST subset, scaled as the presets expect."""
    train = mnist_subset().train
    x = train.x[:samples].astype(np.float32) / np.float32(255)
    x = x.reshape(samples, -1) if model == "mlp" else x.reshape(samples, 1, 28, 28)
    return x, train.y[:samples].astype(np.int64)


class KillAtStep(Callback):
    """SIGKILLs this process after step `step` (a crash between checkpoints)."""

    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_step_end(self, step, loss):
        if step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def train(ranks, out, settings):
    """fit(distributed=ranks) on arrays or a stream; settings (JSON): model, samples or stream,
    batch (global), epochs, and optionally checkpoint, every, kill_rank/kill_step, resume."""
    cfg = json.loads(settings)
    preset = zoo.get(cfg["model"])
    model = preset.build(seed=100 + ranks.rank)  # rank 0's weights must win (start broadcasts)
    callbacks, initial_state = [], None
    if cfg.get("checkpoint"):
        callbacks.append(Checkpoint(cfg["checkpoint"], every_n_steps=cfg["every"]))
    if cfg.get("kill_rank") == ranks.rank:
        callbacks.append(KillAtStep(cfg["kill_step"]))
    if cfg.get("resume"):
        model, initial_state, _ = load_checkpoint(cfg["resume"])
    if "stream" in cfg:
        layout = "flat" if cfg["model"] == "mlp" else "nchw"
        with ranks.open_stream(cfg["stream"], cfg["batch"], layout=layout) as stream:
            history = model.fit(stream, epochs=cfg["epochs"], callbacks=callbacks, verbose=0,
                                initial_state=initial_state, distributed=ranks)
    else:
        x, y = subset(cfg["model"], cfg["samples"])
        history = model.fit(x, y, epochs=cfg["epochs"], batch_size=cfg["batch"], seed=3, callbacks=callbacks,
                            verbose=0, initial_state=initial_state, distributed=ranks)
    save(out, ranks, params=model.params, step_loss=np.array(history.step_loss),
         epoch_loss=np.array(history.epoch_train_loss), threads=np.array(fastnn.get_num_threads()))


SCENARIOS = {"broadcast": broadcast, "average": average, "checksum": checksum, "fail": fail,
             "random_search": random_search, "single": single, "train": train}

if __name__ == "__main__":
    scenario, out, *args = sys.argv[1:]
    SCENARIOS[scenario](DataParallel(), out, *args)
