"""fastnn's own `model.predict` vs ONNX Runtime on the exported LeNet: inference images/s.

    python bench/onnx_compare.py [--threads 1 2] [--batches 1 64 1000] [--repeats 5] [--json OUT]

One LeNet (the preset, seed 0), exported with fastnn.onnx.to_onnx; the same inputs for both
(the first MNIST training images when the files are found, else random data of that shape).
ONNX Runtime: CPU provider, graph optimisation ALL, intra_op_num_threads = threads,
inter_op_num_threads = 1, sequential execution; its raw outputs go through the same argmax that
`predict` does, so both return class ids (checked equal before timing). fastnn:
set_num_threads(threads). Inside each repeat the two alternate in a rotating order after a
settle pause (compare.py's `alternate`), every number is the median of the repeats, wall clock
only, and a note says how much CPU other processes took meanwhile. Needs the onnx extra
(`pip install "fastnn[onnx]"`). CI runs bench/bench_onnx.py instead (tiny, --benchmark-disable).
"""
import argparse
import json
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from baselines import cases  # noqa: E402
from compare import alternate, calibrated, median  # noqa: E402
from compare_report import noise_note  # noqa: E402
from noise import OthersCpu  # noqa: E402

BATCHES = (1, 64, 1000)
THREADS = (1, 2)


def lenet():
    return cases.fastnn_model("lenet")


def ort_session(onnx_path, threads):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])


def predictors(model, onnx_path, threads):
    """{who: x -> class ids}; who is 'fastnn' or 'onnxruntime'."""
    session = ort_session(onnx_path, threads)
    return {"fastnn": model.predict,
            "onnxruntime": lambda x: np.argmax(session.run(["output"], {"input": x})[0], axis=1)}


def measure(threads_list=THREADS, batches=BATCHES, repeats=5):
    """[{'batch', 'threads', 'images_per_s': {who: ...}, 'others_cpu'}] for each pair."""
    from fastnn.onnx import to_onnx
    model = lenet()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        onnx_path = to_onnx(model, os.path.join(folder, "lenet.onnx"))
        for threads in threads_list:
            fns = predictors(model, onnx_path, threads)
            for batch in batches:
                x = np.ascontiguousarray(cases.samples("lenet", batch)[0], dtype=np.float32)
                ids = {who: fn(x) for who, fn in fns.items()}
                if not np.array_equal(ids["fastnn"], ids["onnxruntime"]):
                    raise AssertionError(f"batch {batch}: fastnn and ONNX Runtime predict different classes")
                with OthersCpu() as noise:
                    timed = {who: calibrated(lambda f=fn, x=x: f(x), who, threads) for who, fn in fns.items()}
                    seconds = alternate(timed, threads, repeats)
                rows.append({"batch": batch, "threads": threads, "others_cpu": noise.share,
                             "images_per_s": {who: batch / median(s) for who, s in seconds.items()}})
    return rows


def table(rows):
    lines = [(f"{'batch':>6} {'threads':>7} {'fastnn img/s':>14} {'onnxruntime img/s':>18} "
              f"{'fastnn/ort':>10}  machine")]
    for r in rows:
        ours, theirs = r["images_per_s"]["fastnn"], r["images_per_s"]["onnxruntime"]
        lines.append(f"{r['batch']:>6} {r['threads']:>7} {ours:>14,.0f} {theirs:>18,.0f} "
                     f"{ours / theirs:>9.2f}x  {noise_note(r['others_cpu'])}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=list(THREADS))
    parser.add_argument("--batches", type=int, nargs="+", default=list(BATCHES))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv)
    rows = measure(args.threads, args.batches, args.repeats)
    print(f"LeNet inference, fastnn model.predict vs ONNX Runtime on its ONNX export "
          f"(inputs: {cases.samples('lenet', 1)[2]}; median of {args.repeats} alternating repeats)")
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
