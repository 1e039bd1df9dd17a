"""What data-parallel training costs (docs/distributed.md). Numbers from one machine are
indicative only: its ranks share its cores, and other work may be running on it.

    python bench/distributed.py steps --model mlp --ranks 2       # Allreduce per step, its share
    python bench/distributed.py steps --model lenet --ranks 2 --steps 40
    python bench/distributed.py model --model lenet               # expected speedup on K machines
    python bench/distributed.py rss --model mlp --epochs 2        # per-rank peak RSS, streamed (FASTNN_DATA)
    python bench/distributed.py accuracy --model mlp              # test accuracy: 1 process vs 2 ranks

`steps` launches itself under the venv's mpiexec; each rank trains on batches of the bundled
MNIST subset at the preset's global batch, and rank 0 prints medians over the ranks' steps:
the whole step, the Allreduce of the gradients inside it (it includes waiting for the slowest
rank), and the same Allreduce alone after a barrier (the transfer itself).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.abspath(__file__)
# The speedup model's network: a ring Allreduce sends and receives 2 (K-1)/K of the gradient
# bytes per rank, in 2 (K-1) messages, each paying a latency (TCP on a LAN: ~50 us).
LATENCY_S = 50e-6
LINKS_GBIT = (1, 10)


def mpiexec():
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return beside if os.access(beside, os.X_OK) else "mpiexec"


def batches(name, batch, count):
    """`count` batches of the bundled subset in the preset's layout (cycled)."""
    import numpy as np
    from fastnn.datasets import mnist_subset
    train = mnist_subset().train
    x = train.x.astype(np.float32) / np.float32(255)
    x = x.reshape(len(x), -1) if name in ("mlp", "nielsen") else x.reshape(len(x), 1, 28, 28)
    y = train.y.astype(np.int64)
    starts = [(i * batch) % (len(x) - batch) for i in range(count)]
    return [(np.ascontiguousarray(x[s:s + batch]), y[s:s + batch]) for s in starts]


def steps_worker(args):
    import numpy as np
    from fastnn import zoo
    from fastnn.distributed import DataParallel
    ranks = DataParallel()
    preset = zoo.get(args.model)
    model = preset.build(seed=0)
    ranks.start(model)
    per_rank = ranks.per_rank_batch("bench", preset.batch_size)
    data = batches(args.model, per_rank, args.steps + 5)
    allreduce, whole = [], []
    average = ranks.average_gradients

    def timed_average(*a):
        start = time.perf_counter()
        average(*a)
        allreduce.append(time.perf_counter() - start)

    ranks.average_gradients = timed_average  # bench only: time the call inside the step
    for x, y in data:
        start = time.perf_counter()
        ranks.train_step(model, x, y, False)
        whole.append(time.perf_counter() - start)
    alone = []
    for _ in range(args.steps):
        ranks.barrier()
        start = time.perf_counter()
        average(model.grads, per_rank, preset.batch_size)
        alone.append(time.perf_counter() - start)
    mine = [statistics.median(v[5:] if len(v) > args.steps else v) for v in (whole, allreduce, alone)]
    everyone = ranks.comm.gather(mine, root=0)
    if ranks.is_root:
        step, inside, bare = (max(r[i] for r in everyone) for i in range(3))
        print(json.dumps({"model": args.model, "ranks": ranks.world, "threads_per_rank": ranks.threads,
                          "batch_per_rank": per_rank, "gradient_bytes": model.grads.nbytes,
                          "step_ms": round(step * 1e3, 3), "allreduce_in_step_ms": round(inside * 1e3, 3),
                          "allreduce_share": round(inside / step, 3), "allreduce_alone_ms": round(bare * 1e3, 3)}))


def steps(args):
    command = [mpiexec(), "-n", str(args.ranks), sys.executable, HERE, "steps-worker",
               "--model", args.model, "--steps", str(args.steps)]
    return subprocess.run(command).returncode


def _time(call, repeats):
    """Seconds of each of `repeats` calls, after 3 warm-up calls."""
    times = []
    for _ in range(repeats + 3):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times[3:]


def compute_ms(model, x, y, repeats):
    """Median ms of a train step on the layer-by-layer path (the one distributed ranks take)."""
    return statistics.median(_time(lambda: model.train_step(x, y, before_update=lambda *a: None), repeats)) * 1e3


def speedup_model(args):
    """Step time on K machines = compute at the per-rank batch + a ring Allreduce over the link."""
    import fastnn
    from fastnn import zoo
    fastnn.set_num_threads(args.threads)
    preset = zoo.get(args.model)
    model = preset.build(seed=0)
    size = model.grads.nbytes
    x, y = batches(args.model, preset.batch_size, 1)[0]
    fused = statistics.median(_time(lambda: model.train_step(x, y), args.steps)) * 1e3
    print(f"one process, the default step (one-call for Dense stacks): {fused:.3f} ms (speedups "
          f"are against it); compute: the layer-by-layer path the ranks take")
    print(f"{args.model}: global batch {preset.batch_size}, {size / 1e6:.2f} MB of gradients, "
          f"{args.threads} thread(s) per machine, latency {LATENCY_S * 1e6:.0f} us per message")
    print(f"{'K':>3} {'batch/rank':>10} {'compute ms':>10} " +
          " ".join(f"{f'allreduce ms @{g}G':>17} {f'speedup @{g}G':>12}" for g in LINKS_GBIT))
    for k in (1, 2, 4, 8):
        if preset.batch_size % k:
            continue
        x, y = batches(args.model, preset.batch_size // k, 1)[0]
        compute = compute_ms(model, x, y, args.steps)
        row = f"{k:>3} {preset.batch_size // k:>10} {compute:>10.3f} "
        for gbit in LINKS_GBIT:
            ring = 0.0 if k == 1 else (2 * (k - 1) / k * size / (gbit * 1e9 / 8) + 2 * (k - 1) * LATENCY_S) * 1e3
            row += f"{ring:>17.3f} {fused / (compute + ring):>12.2f} "  # against the default step
        print(row)


def rss(args):
    """Peak RSS of every rank of a streamed `fastnn train --distributed` run on full MNIST."""
    data = args.data or os.environ.get("FASTNN_DATA")
    if not data:
        sys.exit("rss: give --data DIR or set FASTNN_DATA (a folder with the MNIST IDX files)")
    with tempfile.TemporaryDirectory() as tmp:
        shuffled = os.path.join(tmp, "train.shuf")
        subprocess.run([sys.executable, "-m", "fastnn.cli", "shuffle", "--data", data, "--epochs",
                        str(args.epochs), "--out", shuffled], check=True)
        out = subprocess.run([mpiexec(), "-n", str(args.ranks), sys.executable, "-m", "fastnn.cli", "train",
                              "--distributed", "--model", args.model, "--stream", shuffled, "--data", data,
                              "--epochs", str(args.epochs), "--quiet", "--json"],
                             check=True, capture_output=True, text=True).stdout
    summary = json.loads(out.splitlines()[-1])
    print(json.dumps({k: summary[k] for k in ("model", "ranks", "epochs", "test_accuracy",
                                              "peak_rss_mb_per_rank", "samples_per_second")}))


def accuracy(args):
    """Test accuracy of the preset trained by one process and by K ranks (full MNIST)."""
    data = args.data or os.environ.get("FASTNN_DATA")
    common = [sys.executable, "-m", "fastnn.cli", "train", "--model", args.model, "--quiet", "--json"]
    common += ["--data", data] if data else []
    common += ["--epochs", str(args.epochs)] if args.epochs else []
    results = {}
    for label, command in (("1 process", common + ["--threads", "1"]),
                           (f"{args.ranks} ranks", [mpiexec(), "-n", str(args.ranks)] + common + ["--distributed"])):
        summary = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        results[label] = {k: summary[k] for k in ("test_accuracy", "seconds", "epochs")}
    print(json.dumps({"model": args.model, **results}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["steps", "steps-worker", "model", "rss", "accuracy"])
    parser.add_argument("--model", default="mlp", choices=["mlp", "nielsen", "lenet"])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--data", default=None)
    args = parser.parse_args()
    if args.what == "rss" and args.epochs is None:
        args.epochs = 2
    handler = {"steps": steps, "steps-worker": steps_worker, "model": speedup_model, "rss": rss,
               "accuracy": accuracy}[args.what]
    sys.exit(handler(args) or 0)


if __name__ == "__main__":
    main()
