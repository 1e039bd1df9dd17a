"""Peak memory of a whole training run streamed from a pre-shuffled file (issue: flat memory).

    python bench/memory_flat.py --model mlp --epochs 16          # targets: peak <= 64 MB,
    python bench/memory_flat.py --model lenet --epochs 10        #   lenet <= 96 MB,
    python bench/memory_flat.py --model mlp --epochs 16 --in-memory   # the comparison

Writes the shuffled file first in a separate process (so the shuffler's memory is not counted),
then trains in this process and prints RSS after every epoch and the process peak (VmHWM).
MNIST comes from --data or $FASTNN_DATA. Run it under a hard limit like the seed's 512 MB VM:
    prlimit --as=536870912 python bench/memory_flat.py --model mlp --epochs 16
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def status_mb(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mlp", choices=["mlp", "nielsen", "lenet"])
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--data", default=os.environ.get("FASTNN_DATA"))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--in-memory", action="store_true", help="load MNIST into memory instead")
    parser.add_argument("--json", help="write the measurements here")
    args = parser.parse_args()
    if not args.data:
        sys.exit("memory_flat: give --data DIR or set FASTNN_DATA (a folder with the MNIST IDX files)")
    baseline = status_mb("VmRSS")

    with tempfile.TemporaryDirectory() as tmp:
        shuffled = os.path.join(tmp, "train.shuffled")
        if not args.in_memory:
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "fastnn.cli", "shuffle", "--data", args.data, "--epochs",
                            str(args.epochs), "--seed", "0", "--out", shuffled], check=True)
            print(f"shuffled {args.epochs} epochs in {time.perf_counter() - start:.1f} s "
                  f"({os.path.getsize(shuffled) / 2**20:.0f} MB)")

        import fastnn
        from fastnn import zoo
        from fastnn.train.callbacks import Callback
        from fastnn.data import IdxBatches, ShuffledStream, mnist_files
        if args.threads:
            fastnn.set_num_threads(args.threads)
        preset = zoo.get(args.model)
        layout = "flat" if preset.layout == "flat" else "nchw"
        files = mnist_files(args.data)
        after_import = status_mb("VmRSS")
        rss = []

        class RssPrinter(Callback):
            def on_epoch_end(self, epoch, logs):
                rss.append(status_mb("VmRSS"))
                print(f"epoch {epoch:2d}: RSS {rss[-1]:6.1f} MB  peak {status_mb('VmHWM'):6.1f} MB  "
                      f"test acc {logs['val_accuracy']:.4f}  {logs['samples_per_second']:,.0f} samples/s",
                      flush=True)

        model = preset.build(seed=0)
        if args.in_memory:
            from fastnn.commands import load_mnist
            (x, y), test, _ = load_mnist(args.data, preset.layout)
            history = model.fit(x, y, epochs=args.epochs, batch_size=preset.batch_size, seed=0,
                                validation_data=test, callbacks=[RssPrinter()], verbose=0)
        else:
            # The training batch size: evaluation reuses the training buffers.
            test = IdxBatches(files["test_images"], files["test_labels"], batch_size=preset.batch_size,
                              layout=layout)
            with ShuffledStream(shuffled, preset.batch_size, layout=layout) as stream:
                history = model.fit(stream, epochs=args.epochs, validation_data=test,
                                    callbacks=[RssPrinter()], verbose=0)
    result = {
        "model": args.model, "epochs": len(rss), "mode": "in-memory" if args.in_memory else "stream",
        "rss_before_import_mb": round(baseline, 1), "rss_after_import_mb": round(after_import, 1),
        "rss_per_epoch_mb": [round(r, 1) for r in rss], "peak_rss_mb": round(status_mb("VmHWM"), 1),
        "rss_growth_epoch2_to_last_mb": round(rss[-1] - rss[1], 2) if len(rss) > 1 else None,
        "test_accuracy": history.epoch_val_accuracy[-1],
    }
    print(json.dumps(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
