"""LeNet inference throughput against batch size, for fastnn and each peer, from the JSON that
`bench/compare.py --json OUT` writes: one PNG panel per thread count.

    python bench/plot_compare.py compare.json docs/lenet_inference.png [--workload lenet]
"""
import argparse
import json

from matplotlib.figure import Figure


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json")
    parser.add_argument("png")
    parser.add_argument("--workload", default="lenet")
    args = parser.parse_args()
    with open(args.json) as f:
        data = json.load(f)
    rows = [r for r in data["results"] if r["workload"] == args.workload and r.get("infer_images_per_s")]
    fig = Figure(figsize=(4.2 * len(rows), 3.4))
    for i, row in enumerate(sorted(rows, key=lambda r: r["threads"])):
        ax = fig.add_subplot(1, len(rows), i + 1)
        batches = sorted(row["infer_images_per_s"], key=int)
        names = [n for n in row["infer_images_per_s"][batches[0]] if n != "fastnn.forward"]
        for name in names:
            ax.plot([int(b) for b in batches], [row["infer_images_per_s"][b][name] for b in batches],
                    marker="o", linewidth=2.5 if name == "fastnn" else 1.2, label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_ylabel("images / s")
        ax.set_title(f"{args.workload} inference, {row['threads']} thread(s)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.png, dpi=110)
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
