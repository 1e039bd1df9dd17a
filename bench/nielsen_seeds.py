"""How the `nielsen` preset's accuracy depends on the seed (the book quotes one run: ~95%).

    FASTNN_DATA=../shared/data/mnist python bench/nielsen_seeds.py --seeds 10 [--hidden 30]
        [--dtype float32 float64] [--threads 1] [--json OUT]

Trains the preset exactly as `fastnn train --model nielsen --seed S` does (same weights, data
order and epochs) for seeds 0..N-1 and prints each run's best-epoch and final test accuracy,
then the distribution: median, mean, min, max and how many runs reach the 95% target.
"""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

import fastnn
from fastnn import zoo
from fastnn.commands import load_mnist


def run(seed, hidden, dtype, data):
    (x, y), test = data
    preset = zoo.get("nielsen")
    model = preset.build(hidden=hidden, seed=seed, dtype=np.dtype(dtype))
    start = time.perf_counter()
    history = model.fit(x, y, epochs=preset.epochs, batch_size=preset.batch_size,
                        validation_data=test, seed=seed, verbose=0)
    acc = history.epoch_val_accuracy
    return {"seed": seed, "hidden": hidden, "dtype": dtype, "best": max(acc), "final": acc[-1],
            "best_epoch": int(np.argmax(acc)), "seconds": round(time.perf_counter() - start, 1)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--hidden", type=int, default=30)
    parser.add_argument("--dtype", nargs="+", default=["float32"], choices=["float32", "float64"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    if not os.environ.get("FASTNN_DATA"):
        sys.exit("set FASTNN_DATA to the folder with the four MNIST files")
    fastnn.set_num_threads(args.threads)
    train, test, note = load_mnist(None, "flat")
    results = []
    for dtype in args.dtype:
        cast = (train[0].astype(dtype), train[1]), (test[0].astype(dtype), test[1])
        for seed in range(args.seeds):
            r = run(seed, args.hidden, dtype, cast)
            results.append(r)
            print(f"{dtype} seed {seed}: best {r['best']:.2%} (epoch {r['best_epoch']}), "
                  f"final {r['final']:.2%}, {r['seconds']} s", flush=True)
        best = [r["best"] for r in results if r["dtype"] == dtype]
        print(f"{dtype} 784-{args.hidden}-10 over {len(best)} seeds: best-epoch accuracy median "
              f"{statistics.median(best):.2%}, mean {statistics.mean(best):.2%}, min {min(best):.2%}, "
              f"max {max(best):.2%}; {sum(b >= 0.95 for b in best)} of {len(best)} reach 95%", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
