"""fastnn vs PyTorch (CPU), plain numpy and the optional peers, side by side in one run.

    python bench/compare.py [--threads 1 2] [--repeats 5] [--steps N] [--json OUT]
                            [--peers jax,onnxruntime,sklearn] [--peer-python PEER=PYTHON ...]
    python bench/compare.py --accuracy [--epochs 2]

Same architecture, float32, batch, initial weights (fastnn's, copied into the peers), one fixed
batch sequence (the first MNIST training images when the files are found, else random data of
the same shape) and thread count (fastnn.set_num_threads / torch.set_num_threads / threadpoolctl
on numpy's BLAS). Inside each repeat the contenders alternate, in a rotating order, so machine
noise hits all of them; every number is the median of the repeats. Wall clock only.
Peak RSS: each contender in a fresh subprocess (see rss_child). PyTorch columns are skipped with
a note when torch is not importable: it is never a fastnn dependency (benchmark venv only:
`pip install torch==2.13.0`, the CPU build).
The optional peers (JAX jit step and lax.scan epoch, ONNX Runtime inference, scikit-learn's
MLPClassifier) each run in a worker process started by the interpreter that has them
(bench/baselines/peers.py), alternating with the others in the same rotation; a peer that is
not installed is skipped with a one-line note. How to run and read it: docs/performance.md.
"""
import argparse
import contextlib
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fma_peak  # noqa: E402
from baselines import cases, peers, spec_of, train_flops, weights_of  # noqa: E402
from baselines.cases import thread_limit  # noqa: E402
from compare_report import kernel_table, overhead_table, table  # noqa: E402
from noise import OthersCpu  # noqa: E402

INFER_BATCHES = (1, 64, 1000)
DEFAULT_STEPS = {"nielsen": 2000, "mlp": 300, "lenet": 10, "spiral": 2000}
OVERHEAD_TARGET_US = 20
# s between contenders: numpy's OpenBLAS workers spin ~0.1 s after their last call (libgomp's
# ~1 ms) and would steal the cores the next contender needs.
SETTLE = 0.25
MEASURE_SECONDS = 0.15  # target length of one inference/kernel measurement


def alternate(fns, threads, repeats):
    """{who: [seconds per call] * repeats}: each fn() returns its seconds per call."""
    out = {who: [] for who in fns}
    order = list(fns)
    for r in range(repeats):
        for who in order[r % len(order):] + order[:r % len(order)]:
            time.sleep(SETTLE)
            with thread_limit(who.split(".")[0], threads):
                out[who].append(fns[who]())
    return out


def timed_loop(fn, calls):
    def run():
        fn()  # untimed: wakes the threads and caches after the settle pause
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        return (time.perf_counter() - start) / calls
    return run


def calibrated(fn, who, threads):
    """timed_loop(fn, n) with n such that one measurement lasts about MEASURE_SECONDS."""
    with thread_limit(who.split(".")[0], threads):
        fn()  # warm-up: buffers, caches
        start = time.perf_counter()
        fn()
        once = time.perf_counter() - start
    return timed_loop(fn, max(1, min(5000, int(MEASURE_SECONDS / max(once, 1e-7)))))


def median(xs):
    return statistics.median(xs)


# -- training and inference ---------------------------------------------------------------------
def start_workers(stack, peer_names, name, threads, steps, pythons):
    """The optional peers' worker processes for one workload (closed by `stack`), and a note for
    each peer that cannot run it (not expressible: sklearn has no convolution)."""
    workers, notes = [], []
    model = cases.fastnn_model(name)  # seed 0: the initial weights every contender starts from
    for peer in peer_names:
        try:
            workers.append(stack.enter_context(peers.Worker(
                peer, model, name, threads, steps, MEASURE_SECONDS, peers.interpreter(peer, pythons))))
        except peers.PeerError as e:
            notes.append(f"note: {peer} skipped on {name} t={threads}: {e}")
    return workers, notes


def measure_workload(name, whos, threads, repeats, steps, peer_names=(), pythons=None):
    batch = cases.WORKLOADS[name]
    data = cases.batches(name, steps)
    trainers, predictors = {}, {}
    for who in whos:
        with thread_limit(who, threads):
            if who == "fastnn":
                model = cases.fastnn_model(name)
                trainers[who] = model.train_step
                predictors["fastnn"] = lambda x, m=model: m.predict_raw(x, batch_size=len(x))
                predictors["fastnn.forward"] = lambda x, m=model: m.forward(x)
            else:
                trainers[who], predictors[who] = cases.contender(who, name)
            for x, y in data[:3]:
                trainers[who](x, y)  # warm-up

    if "fastnn" in whos:  # what users run: fit over the same batches, as one epoch of arrays
        with thread_limit("fastnn", threads):
            fit_model = cases.fastnn_model(name)
        fit_x, fit_y = np.concatenate([x for x, _ in data]), np.concatenate([y for _, y in data])

    def fit_epoch():
        start = time.perf_counter()
        fit_model.fit(fit_x, fit_y, epochs=1, batch_size=batch, shuffle=True, seed=0, verbose=0)
        return (time.perf_counter() - start) / len(data)

    def epoch(step):
        def run():
            for x, y in data[:2]:  # untimed: wakes the threads and caches after the settle pause
                step(x, y)
            start = time.perf_counter()
            for x, y in data:
                step(x, y)
            return (time.perf_counter() - start) / len(data)
        return run

    with contextlib.ExitStack() as stack:
        workers, notes = start_workers(stack, peer_names, name, threads, steps, pythons)
        pids = [w.pid for w in workers]
        train_fns = {w: epoch(s) for w, s in trainers.items()}
        if "fastnn" in whos:
            train_fns["fastnn.fit"] = fit_epoch
        for worker in workers:  # each returns seconds per step, timed inside its process
            train_fns.update({m: functools.partial(worker.train, m) for m in worker.train_modes})
        with OthersCpu(pids) as train_noise:
            train = alternate(train_fns, threads, repeats)
        result = {"workload": name, "threads": threads, "batch": batch, "steps": steps,
                  "step_us": {w: median(t) * 1e6 for w, t in train.items()},
                  "samples_per_s": {w: batch / median(t) for w, t in train.items()},
                  "infer_images_per_s": {}, "train_seconds_all": train, "others_cpu_train": train_noise.share,
                  "peer_notes": notes, "peer_versions": {w.peer: w.versions for w in workers}}
        result["others_cpu_infer"] = {}
        for b in INFER_BATCHES:
            x = cases.samples(name, b)[0]
            with OthersCpu(pids) as noise:
                fns = {w: calibrated(lambda p=p: p(x), w, threads) for w, p in predictors.items()}
                for worker in workers:
                    fns.update({m: functools.partial(worker.infer, m, b) for m in worker.infer_modes})
                times = alternate(fns, threads, repeats)
            result["infer_images_per_s"][b] = {w: b / median(t) for w, t in times.items()}
            result["others_cpu_infer"][b] = noise.share
    if "fastnn" in whos:  # the FMA work of a step, against the machine's measured limit
        result["step_flops"] = train_flops(spec_of(cases.fastnn_model(name))) * batch
        result["fma_peak"] = measured_peak(threads)
    return result


def measured_peak(threads):
    """{width: GFLOP/s} of bench/fma_peak.py at `threads` threads (str keys, JSON-safe) and the
    others' CPU share while it ran ("others_cpu"), or {"note": why not}."""
    try:
        peak = fma_peak.measure(threads)
    except fma_peak.PeakUnavailable as e:
        return {"note": str(e)}
    return {**{str(w): g for w, g in peak.gflops.items() if g is not None}, "others_cpu": peak.others_cpu}


def measure_kernels(whos, threads, repeats):
    with OthersCpu() as noise:
        out = _measure_kernels(whos, threads, repeats)
    out["others_cpu"] = noise.share
    return out


def _measure_kernels(whos, threads, repeats):
    out = {}
    for case in cases.KERNELS:
        fns = {}
        for who in whos:
            with thread_limit(who, threads):
                fns[who] = calibrated(cases.kernel_step(who, case), who, threads)
        out[case] = {w: median(t) * 1e6 for w, t in alternate(fns, threads, repeats).items()}
    return out


# -- Python overhead of a small-net step ----------------------------------------------------------
def step_overhead(name, threads, repeats, steps=2000):
    """A model.train_step vs the same kernel calls made back to back from Python (specialized,
    arguments prebound): the difference is what fastnn's Python layer adds per step.
    Two-Dense-layer workloads (nielsen, spiral) only."""
    import fastnn
    from fastnn import _loss, _optim
    fastnn.set_num_threads(threads)
    model = cases.fastnn_model(name)
    data = cases.batches(name, 50)
    x, y = data[0]
    for xb, yb in data:
        model.train_step(xb, yb)
    l1, l2 = model.layers
    b1, b2, n, opt = l1.buffers(len(x)), l2.buffers(len(x)), threads, model.optimizer
    model.loss(model.forward(x, training=True), y)  # train_step's one-call path leaves no loss.grad
    grad = model.loss.grad
    loss_name = "mse_labels" if model.loss.name == "MSE" else "softmax_cross_entropy"
    loss_kernel = getattr(_loss, loss_name)["float"]
    correct, sgd = _loss.count_correct["float"], _optim.sgd_update["float"]
    w1, c1, w2, c2 = l1.params["w"], l1.params["b"], l2.params["w"], l2.params["b"]
    gw1, gc1, gw2, gc2 = l1.grads["w"], l1.grads["b"], l2.grads["w"], l2.grads["b"]
    y1, y2, dx2 = b1["y"], b2["y"], b2["dx"]
    calls = {
        "dense_forward 1": lambda: l1._forward_kernel(y1, x, w1, c1, l1._act, n),
        "dense_forward 2": lambda: l2._forward_kernel(y2, y1, w2, c2, l2._act, n),
        loss_name: lambda: loss_kernel(grad, y2, y, n),
        "count_correct": lambda: correct(y2, y),
        "dense_backward 2": lambda: l2._backward_kernel(dx2, gw2, gc2, grad, y1, w2, y2, l2._act, n),
        "dense_backward 1": lambda: l1._backward_kernel(None, gw1, gc1, dx2, x, w1, y1, l1._act, n),
        "sgd_update": lambda: sgd(opt.params, opt.grads, None, opt.lr, 0.0, 0.0, n),
    }
    fns = list(calls.values())

    def raw_step():
        for f in fns:
            f()
    saved = model.params.copy()
    timings = {"train_step": [], "raw kernels": []}
    per_call = {k: [] for k in calls}
    methods = {"Sequential.forward": lambda: model.forward(x, training=True),
               "loss()": lambda: model.loss(y2, y),
               "loss.count_correct": lambda: model.loss.count_correct(y2, y),
               "Sequential.backward": model.backward, "optimizer.step": opt.step}
    per_method = {k: [] for k in methods}
    with OthersCpu() as noise:
        for _ in range(repeats):
            timings["train_step"].append(timed_loop(lambda: model.train_step(x, y), steps)())
            timings["raw kernels"].append(timed_loop(raw_step, steps)())
            for k, f in calls.items():
                per_call[k].append(timed_loop(f, steps)())
            for k, f in methods.items():
                per_method[k].append(timed_loop(f, steps)())
    model.params[...] = saved
    us = {k: median(v) * 1e6 for k, v in timings.items()}
    return {"workload": name, "threads": threads, "train_step_us": us["train_step"], "raw_kernels_us": us["raw kernels"],
            "overhead_us": us["train_step"] - us["raw kernels"],
            "per_kernel_us": {k: median(v) * 1e6 for k, v in per_call.items()},
            "per_method_us": {k: median(v) * 1e6 for k, v in per_method.items()}, "others_cpu": noise.share}


# -- peak RSS, one fresh process per contender ----------------------------------------------------
def _status_mb(key):
    with open("/proc/self/status") as f:
        return int(f.read().split(key + ":")[1].split()[0]) / 1024


def rss_child(name, who, threads, steps, spec_dir):
    """Runs in a fresh process: python + numpy + the batches loaded, then the peak RSS counter is
    reset (/proc/self/clear_refs 5); then imports `who`'s framework, builds the net, trains
    `steps` steps (peak 'train'), then predicts one batch of 1000 (peak 'infer1000')."""
    data = cases.batches(name, steps)
    x_infer = cases.samples(name, 1000)[0]
    cases.read_idx_gz.cache_clear()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = _status_mb("VmRSS")
    if who == "fastnn":
        import fastnn
        fastnn.set_num_threads(threads)
        step, predict = cases.contender("fastnn", name)
    else:
        with open(os.path.join(spec_dir, f"{name}.json")) as f:
            spec = json.load(f)
        weights = list(np.load(os.path.join(spec_dir, f"{name}.npz")).values())
        step, predict = cases.make(who, spec, weights)
    with thread_limit(who, threads):
        for x, y in data:
            step(x, y)
        train_peak = _status_mb("VmHWM")
        predict(x_infer)
    print(json.dumps({"base_mb": base, "train_peak_mb": train_peak, "infer1000_peak_mb": _status_mb("VmHWM")}))


def measure_rss(name, whos, threads, steps):
    with tempfile.TemporaryDirectory() as spec_dir:
        model = cases.fastnn_model(name)
        with open(os.path.join(spec_dir, f"{name}.json"), "w") as f:
            json.dump(spec_of(model), f)
        np.savez(os.path.join(spec_dir, f"{name}.npz"), *weights_of(model))
        out = {}
        for who in whos:
            proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--rss-child", name, who,
                                   str(threads), str(steps), spec_dir], capture_output=True, text=True)
            out[who] = json.loads(proc.stdout.splitlines()[-1]) if proc.returncode == 0 else \
                {"error": proc.stderr.strip().splitlines()[-1:]}
        return out


# -- accuracy ---------------------------------------------------------------------------------------
def accuracy(whos, epochs, threads):
    """mlp on real MNIST: same initial weights and shuffled order for every contender."""
    train, test = cases.mnist("train"), cases.mnist("test")
    if train is None:
        print("accuracy: MNIST not found ($FASTNN_DATA or /work/shared/data/mnist); skipped")
        return {}
    batch = cases.WORKLOADS["mlp"]
    nets = {}
    for who in whos:
        with thread_limit(who, threads):
            nets[who] = cases.contender(who, "mlp")
    rng, out = np.random.default_rng(0), {w: [] for w in whos}
    for epoch in range(epochs):
        perm = rng.permutation(len(train[0]))
        xs, ys = train[0][perm], train[1][perm]
        for who, (step, predict) in nets.items():
            with thread_limit(who, threads):
                start = time.perf_counter()
                for i in range(0, len(xs), batch):
                    step(xs[i:i + batch], ys[i:i + batch])
                seconds = time.perf_counter() - start
                acc = float(np.mean(np.argmax(predict(test[0]), axis=1) == test[1]))
            out[who].append({"epoch": epoch + 1, "test_accuracy": acc, "train_seconds": seconds})
            print(f"accuracy mlp epoch {epoch + 1} {who:6}: test {acc:.2%} (epoch took {seconds:.2f} s)", flush=True)
    return out


def versions(whos):
    import fastnn
    import threadpoolctl
    v = {"python": sys.version.split()[0], "numpy": np.__version__, "fastnn": fastnn.info()["version"],
         "fastnn_blas": fastnn.info()["blas"], "fastnn_build": fastnn.info()["build_flags"],
         # the kernels' build level (FASTNN_ISA forces one) and what each family runs at it
         "fastnn_isa": {key: fastnn.info()[key] for key in ("isa", "isa_source", "small_gemm_simd",
                                                             "direct_conv_simd")},
         "threadpoolctl": threadpoolctl.__version__,
         "numpy_blas": [f"{i['internal_api']} {i['version']}" for i in threadpoolctl.threadpool_info()
                        if i["user_api"] == "blas" and i["filepath"] != fastnn.info()["blas_library"]]}
    if "torch" in whos:
        import torch
        v["torch"] = torch.__version__
    return v


def usable_peers(selected, pythons, skip=False):
    """The selected peers whose interpreter has them; a one-line note for each other one."""
    if skip:
        if selected:
            print("note: --accuracy compares fastnn, torch and numpy only; the optional peers are skipped")
        return []
    usable = []
    for peer in selected:
        note = peers.availability(peer, peers.interpreter(peer, pythons))
        if note:
            print(note)
        else:
            usable.append(peer)
    return usable


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, help="train steps per measurement (default per workload)")
    parser.add_argument("--workloads", nargs="+", default=list(cases.WORKLOADS), choices=list(cases.WORKLOADS))
    parser.add_argument("--no-rss", action="store_true", help="skip the peak-RSS subprocesses")
    parser.add_argument("--no-kernels", action="store_true", help="skip conv2d/maxpool alone")
    parser.add_argument("--accuracy", action="store_true", help="only: mlp accuracy on real MNIST")
    parser.add_argument("--epochs", type=int, default=2, help="--accuracy epochs")
    parser.add_argument("--json", help="write all results here")
    parser.add_argument("--peers", default=",".join(peers.PEERS),
                        help="optional peers, comma-separated (default: all; '' for none)")
    parser.add_argument("--peer-python", action="append", metavar="PEER=PYTHON",
                        help="the interpreter (venv) that has PEER, e.g. jax=/work/venv-jax/bin/python")
    parser.add_argument("--rss-child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        name, who, threads, steps, spec_dir = args.rss_child
        return rss_child(name, who, int(threads), int(steps), spec_dir)
    try:
        selected, pythons = peers.parse_selection(args.peers), peers.parse_pythons(args.peer_python)
    except ValueError as e:
        parser.error(str(e))  # one line, exit code 2
    whos = [w for w in cases.CONTENDERS if cases.available(w)]
    if "torch" not in whos:
        print("note: torch is not importable here; PyTorch columns skipped "
              "(pip install torch==2.13.0 in a benchmark venv)")
    peer_names = usable_peers(selected, pythons, skip=args.accuracy)
    report = {"versions": versions(whos), "data": cases.samples("mlp", 10)[2], "command": sys.argv}
    print("versions:", report["versions"], "| data:", report["data"], flush=True)
    if args.accuracy:
        report["accuracy"] = accuracy(whos, args.epochs, max(args.threads))
    else:
        report.update(results=[], kernels={}, overhead=[])
        for threads in args.threads:
            for name in args.workloads:
                steps = args.steps or DEFAULT_STEPS[name]
                r = measure_workload(name, whos, threads, args.repeats, steps, peer_names, pythons)
                if not args.no_rss:
                    r["rss_mb"] = measure_rss(name, whos, threads, steps)
                report["results"].append(r)
                new_versions = {p: v for p, v in r["peer_versions"].items() if p not in report["versions"]}
                if new_versions:  # each peer's versions once, as the workers report them
                    report["versions"].update(new_versions)
                    print("versions:", new_versions, flush=True)
                print(table(r), flush=True)
            if not args.no_kernels:
                report["kernels"][threads] = measure_kernels(whos, threads, args.repeats)
                print(kernel_table(threads, report["kernels"][threads], measured_peak(threads)), flush=True)
            for name in ("nielsen", "spiral"):
                report["overhead"].append(step_overhead(name, threads, args.repeats))
                print(overhead_table(report["overhead"][-1]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1, default=str)


if __name__ == "__main__":
    main()
