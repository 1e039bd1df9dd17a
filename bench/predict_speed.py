"""fastnn's `predict_raw` alone, images/s per batch size: for comparing two builds of fastnn.

    python bench/predict_speed.py [--model lenet] [--threads 2] [--batches 1 64 1000] [--repeats 5]

One preset (seed 0) on the first MNIST training images when FASTNN_DATA has them, else random
data of that shape. For each batch size: a warm-up, then the best of `--repeats` timings of
about 0.3 s each (noise only ever slows a run), printed as one JSON line {batch: images/s}.
Against another build, alternate the two (its source tree first on PYTHONPATH), e.g.

    for build in OLD NEW NEW OLD; do PYTHONPATH=$build python bench/predict_speed.py --threads 2; done

(bench/compare.py and bench/onnx_compare.py compare fastnn with other libraries instead.)
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from baselines import cases  # noqa: E402

import fastnn  # noqa: E402


def images_per_second(predict, x, repeats, seconds=0.3):
    """Best of `repeats` timings of back-to-back predict(x) calls lasting about `seconds`."""
    for _ in range(20):
        predict(x)
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds / 3:
        predict(x)
        calls += 1
    calls = max(1, calls * 3)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            predict(x)
        best = min(best, (time.perf_counter() - start) / calls)
    return len(x) / best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lenet", help="a preset name (fastnn.zoo)")
    parser.add_argument("--threads", type=int, default=fastnn.get_num_threads())
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64, 1000])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if args.threads < 1 or args.repeats < 1 or min(args.batches) < 1:
        parser.error("--threads, --repeats and every --batches value must be >= 1")
    fastnn.set_num_threads(args.threads)
    model = cases.fastnn_model(args.model)
    result = {}
    for batch in args.batches:
        x = cases.samples(args.model, batch)[0]
        result[batch] = round(images_per_second(lambda v: model.predict_raw(v, batch_size=batch), x,
                                                args.repeats))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
