"""fastnn vs PyTorch (CPU) vs plain numpy, side by side in one harness run.

    python bench/compare.py [--threads 1 2] [--repeats 5] [--json OUT]

Same architecture, float32, batch, initial weights (copied from fastnn's), data and thread
count; the contenders alternate round by round so machine noise hits all of them; medians of
the rounds. PyTorch columns are skipped with a note when torch is not importable (it is never a
fastnn dependency: install it only in a benchmark venv with `pip install torch==2.13.0`).
Each contender runs in its own fresh process per round (peak RSS comes from there too); the
rounds alternate the contenders.
"""
import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
from threadpoolctl import ThreadpoolController

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import baselines  # noqa: E402

import fastnn  # noqa: E402
from fastnn import zoo  # noqa: E402

WORKLOADS = {"nielsen": 10, "mlp": 100, "lenet": 64, "spiral": 30}   # name -> batch size
TARGETS = {("nielsen", "torch"): 10, ("nielsen", "numpy"): 3, ("mlp", "torch"): 3, ("mlp", "numpy"): 1.5,
           ("lenet", "torch"): 2, ("spiral", "torch"): 20}
INFER_TARGETS = {1: 3, 1000: 2}


def have_torch():
    """Without importing it: a process that never uses torch must not pay for it (RSS)."""
    return importlib.util.find_spec("torch") is not None


def limit_numpy_blas(threads):
    """Limit numpy's BLAS only. threadpool_limits(n) would also set fastnn's own OpenBLAS, which
    fastnn keeps at one thread on purpose (it splits GEMMs over its OpenMP threads)."""
    ours = fastnn.info()["blas_library"]
    controller = ThreadpoolController()
    others = [c.filepath for c in controller.lib_controllers if c.filepath != ours
              and c.internal_api in ("openblas", "mkl", "blis")]
    return controller.select(filepath=others).limit(limits=threads)


def batches(name, batch, count, seed=0):
    preset = zoo.get(name)
    rng = np.random.default_rng(seed)
    shape = preset.input_shape
    classes = 3 if name == "spiral" else 10
    return [(rng.random((batch,) + shape, dtype=np.float32), rng.integers(0, classes, batch))
            for _ in range(count)]


def contenders(name, threads, only=None):
    """{who: (step, predict)}; `only` builds just that one (so its process imports nothing else)."""
    out = {}
    if only in (None, "fastnn"):
        model = zoo.get(name).build(seed=0)
        out["fastnn"] = (model.train_step, lambda x: model.predict_raw(x, batch_size=len(x)))
    if only in (None, "torch") and have_torch():
        import torch
        torch.set_num_threads(threads)
        out["torch"] = baselines.make_torch(zoo.get(name).build(seed=0))
    if only in (None, "numpy") and name != "lenet":
        out["numpy"] = baselines.make_numpy(zoo.get(name).build(seed=0))
    return out


def time_steps(step, data):
    start = time.perf_counter()
    for x, y in data:
        step(x, y)
    return time.perf_counter() - start


def run_child(name, who, threads, steps):
    """Time one contender in a fresh process: {'step_s', 'infer': {batch: images/s}, 'rss_mb'}.

    One process per contender and round: torch ships its own OpenMP runtime, and two OpenMP
    runtimes in one process spin against each other on two cores (measured: both sides several
    times slower at 2 threads), which would measure the co-hosting, not the libraries."""
    code = (f"import sys, json; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); "
            f"import compare; print(json.dumps(compare.child({name!r}, {who!r}, {threads}, {steps})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{who} {name}: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def child(name, who, threads, steps):
    fastnn.set_num_threads(threads)
    with limit_numpy_blas(threads):  # torch gets torch.set_num_threads(threads) in contenders()
        step, predict = contenders(name, threads, only=who)[who]
        data = batches(name, WORKLOADS[name], steps)
        time_steps(step, data[:3])  # warm-up: buffers, caches
        step_s = min(time_steps(step, data) for _ in range(3)) / steps
        infer = {}
        if name == "lenet":
            for b in (1, 64, 1000):
                x = batches(name, b, 1)[0][0]
                reps = max(3, 1000 // b)
                predict(x)
                start = time.perf_counter()
                for _ in range(reps):
                    predict(x)
                infer[b] = reps * b / (time.perf_counter() - start)
    rss = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) / 1024
    return {"step_s": step_s, "infer": infer, "rss_mb": rss}


def measure(name, threads, repeats, steps):
    """Rounds alternate the contenders (fastnn, torch, numpy, fastnn, ...), so machine noise
    hits all of them; medians over the rounds."""
    who_list = ["fastnn"] + (["torch"] if have_torch() else []) + (["numpy"] if name != "lenet" else [])
    runs = {who: [] for who in who_list}
    for _ in range(repeats):
        for who in who_list:
            runs[who].append(run_child(name, who, threads, steps))
    batch = WORKLOADS[name]
    per_step = {who: statistics.median(r["step_s"] for r in rs) for who, rs in runs.items()}
    infer = {}
    if name == "lenet":
        for b in (1, 64, 1000):
            infer[b] = {who: round(statistics.median(r["infer"][str(b)] if str(b) in r["infer"] else r["infer"][b]
                                                      for r in rs), 1) for who, rs in runs.items()}
    return {"workload": name, "threads": threads, "batch": batch,
            "step_us": {w: round(t * 1e6, 1) for w, t in per_step.items()},
            "samples_per_s": {w: round(batch / t, 1) for w, t in per_step.items()},
            "infer_images_per_s": infer,
            "rss_mb": {w: round(statistics.median(r["rss_mb"] for r in rs), 1) for w, rs in runs.items()}}


def table(results):
    lines = []
    for r in results:
        fast = r["samples_per_s"]["fastnn"]
        for peer in ("torch", "numpy"):
            if peer not in r["samples_per_s"]:
                continue
            ratio = fast / r["samples_per_s"][peer]
            target = TARGETS.get((r["workload"], peer))
            verdict = "" if target is None else ("PASS" if ratio >= target else "MISS") + f" (>= {target}x)"
            lines.append(f"{r['workload']:8} t={r['threads']} train  vs {peer:5}: fastnn {fast:>11,.0f}/s "
                         f"({r['step_us']['fastnn']:>8.1f} us/step), {peer} {r['samples_per_s'][peer]:>11,.0f}/s "
                         f"({r['step_us'][peer]:>8.1f} us) -> {ratio:5.2f}x {verdict}")
        for b, d in r["infer_images_per_s"].items():
            if "torch" in d:
                ratio = d["fastnn"] / d["torch"]
                target = INFER_TARGETS.get(b)
                verdict = "" if target is None else ("PASS" if ratio >= target else "MISS") + f" (>= {target}x)"
                lines.append(f"{r['workload']:8} t={r['threads']} infer b={b:<4} vs torch: fastnn "
                             f"{d['fastnn']:>9,.0f} img/s, torch {d['torch']:>9,.0f} img/s -> {ratio:5.2f}x {verdict}")
        if "rss_mb" in r:
            lines.append(f"{r['workload']:8} t={r['threads']} peak RSS (whole process): " +
                         ", ".join(f"{w} {v:.0f} MB" for w, v in r["rss_mb"].items() if v))
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=None, help="steps per timing (default per workload)")
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS))
    parser.add_argument("--json")
    args = parser.parse_args()
    import numpy
    versions = {"fastnn": fastnn.info()["version"], "numpy": numpy.__version__, "python": sys.version.split()[0]}
    if have_torch():
        import torch
        versions["torch"] = torch.__version__
    else:
        print("note: torch is not importable here; PyTorch columns skipped (pip install torch==2.13.0 "
              "in a benchmark venv)")
    print("versions:", versions)
    results = []
    for threads in args.threads:
        for name in args.workloads:
            steps = args.steps or {"lenet": 20, "nielsen": 400, "mlp": 200, "spiral": 400}[name]
            r = measure(name, threads, args.repeats, steps)
            results.append(r)
            print(table([r]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"versions": versions, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
