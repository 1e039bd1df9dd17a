"""Two fastnn runs on one machine (issue 16, item 3): the slowdown of two `fastnn train` started
together against one alone, and the speed of a lone run, under each OpenMP wait policy.

    python bench/concurrent_runs.py                          # mlp and nielsen, 3 rounds
    python bench/concurrent_runs.py --models mlp --rounds 5 --json

Policies: "fastnn" sets nothing, so fastnn's defaults apply (the automatic thread count of
fastnn/_share.py and the short spin of fastnn/_openmp_env.py); "spin" is libgomp's own default
(GOMP_SPINCOUNT=300000) with the thread count fixed at the cores, as fastnn ran before; "passive"
is OMP_WAIT_POLICY=PASSIVE with the count fixed; "spin10k" the short spin with the count fixed. Within a round the policies alternate, so a change
in the machine's load hits each alike. Each number is the median over rounds of the training
seconds a run reports (`fastnn train --json`): a lone run, the slower of two started together,
and their ratio. MNIST comes from --data or $FASTNN_DATA. Timings on a machine that other
work shares are indicative only.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

_CORES = str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
# "fastnn": its defaults (automatic thread count, short spin: fastnn/_share.py, _openmp_env.py).
# The others fix the thread count at the cores, as fastnn did before it followed the load.
POLICIES = {"fastnn": {},
            "spin": {"GOMP_SPINCOUNT": "300000", "FASTNN_NUM_THREADS": _CORES},  # libgomp's default
            "passive": {"OMP_WAIT_POLICY": "PASSIVE", "FASTNN_NUM_THREADS": _CORES},
            "spin10k": {"GOMP_SPINCOUNT": "10000", "FASTNN_NUM_THREADS": _CORES}}
KNOBS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME", "FASTNN_NUM_THREADS", "OMP_NUM_THREADS")


def start(model, epochs, data, policy):
    env = {k: v for k, v in os.environ.items() if k not in KNOBS}
    env.update(POLICIES[policy], FASTNN_DATA=data)
    cmd = [sys.executable, "-m", "fastnn.cli", "train", "--model", model, "--epochs", str(epochs),
           "--json", "--quiet"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def seconds(proc):
    out, err = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"fastnn train failed ({proc.returncode}): {err.strip()[-500:]}")
    return json.loads(out.strip().splitlines()[-1])["seconds"]


def measure(model, epochs, data, policy):
    """(lone seconds, slower of two together)."""
    lone = seconds(start(model, epochs, data, policy))
    pair = [start(model, epochs, data, policy) for _ in range(2)]
    return lone, max(seconds(p) for p in pair)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp,nielsen")
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data", default=os.environ.get("FASTNN_DATA"))
    parser.add_argument("--json", action="store_true", help="print the results as one JSON line")
    args = parser.parse_args()
    if not args.data:
        parser.error("--data or $FASTNN_DATA: a folder with the MNIST IDX files")
    models, policies = args.models.split(","), args.policies.split(",")
    unknown = set(policies) - set(POLICIES)
    if unknown:
        parser.error(f"--policies: unknown {sorted(unknown)}; known: {sorted(POLICIES)}")
    runs = {(m, p): [] for m in models for p in policies}
    for _ in range(args.rounds):
        for model in models:
            for policy in policies:
                runs[model, policy].append(measure(model, args.epochs, args.data, policy))
    rows = []
    for (model, policy), results in runs.items():
        lone = statistics.median(r[0] for r in results)
        pair = statistics.median(r[1] for r in results)
        rows.append({"model": model, "policy": policy, "lone_s": lone, "two_at_once_s": pair,
                     "slowdown": round(pair / lone, 2), "rounds": len(results)})
    if args.json:
        print(json.dumps(rows))
        return
    print(f"{'model':<9}{'policy':<9}{'lone s':>9}{'two at once s':>15}{'slowdown':>10}")
    for r in rows:
        print(f"{r['model']:<9}{r['policy']:<9}{r['lone_s']:>9.3f}{r['two_at_once_s']:>15.3f}{r['slowdown']:>9.2f}x")


if __name__ == "__main__":
    main()
