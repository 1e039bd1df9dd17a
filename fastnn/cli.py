"""`fastnn train | evaluate | shuffle | export | info`: the command line.

Bad arguments and bad data end in one line on stderr and exit code 2, never a traceback.
"""
import argparse
import sys

from .commands import EXIT_USAGE, UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        raise UsageError(message)


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _memory_size(text):
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    try:
        if text[-1:].upper() in units:
            return int(float(text[:-1]) * units[text[-1].upper()])
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size like 64M, got {text!r}") from None


def build_parser():
    from . import zoo
    parser = _Parser(prog="fastnn", description="Train and evaluate fastnn models.")
    sub = parser.add_subparsers(dest="command")

    train = sub.add_parser("train", help="train a preset model or a run file")
    train.add_argument("--model", choices=list(zoo.PRESETS), metavar="NAME",
                       help=f"preset: {', '.join(zoo.PRESETS)} (default lenet)")
    train.add_argument("--config", metavar="FILE",
                       help="a run file (JSON: architecture, loss, optimizer, fit settings), e.g. "
                            "from `fastnn config --model NAME`; instead of --model")
    train.add_argument("--epochs", type=_positive_int)
    train.add_argument("--batch-size", type=_positive_int)
    train.add_argument("--lr", type=_positive_float)
    train.add_argument("--hidden", type=_positive_int)
    train.add_argument("--optimizer", choices=["sgd", "random-search"], help="(default sgd)")
    train.add_argument("--data", help="an .npz file (x_train, y_train, x_test, y_test) or a folder of "
                                      "MNIST-format IDX files (gz or raw, canonical names)")
    train.add_argument("--stream", help="pre-shuffled file from `fastnn shuffle`: train from it")
    train.add_argument("--threads", type=_positive_int)
    train.add_argument("--seed", type=int, help="(default 0)")
    train.add_argument("--out", help="save the trained model here")
    train.add_argument("--plot", help="write a PNG (history, or decision regions for 2-D data)")
    train.add_argument("--json", action="store_true", help="last stdout line: one JSON summary")
    train.add_argument("--quiet", action="store_true", help="no per-epoch lines or progress bar")
    train.add_argument("--checkpoint", metavar="FILE",
                       help="save a resumable checkpoint here (every --checkpoint-every steps, at "
                            "the end, and on Ctrl-C)")
    train.add_argument("--checkpoint-every", type=_positive_int, metavar="N",
                       help="steps between checkpoints (default: only at the end and on Ctrl-C)")
    train.add_argument("--distributed", action="store_true",
                       help="one rank of an MPI job (mpiexec -n K fastnn train --distributed ...): "
                            "data-parallel, --batch-size is global (docs/distributed.md)")
    train.add_argument("--resume", metavar="FILE",
                       help="continue the run saved in this checkpoint: it recorded the run's "
                            "arguments, so none are needed (any given must agree); the result is "
                            "bit-identical to an uninterrupted run")

    evaluate = sub.add_parser("evaluate", help="test accuracy of a saved model")
    evaluate.add_argument("model_file")
    evaluate.add_argument("--data", help="an .npz file or a folder of MNIST-format IDX files")
    evaluate.add_argument("--json", action="store_true")

    shuffle = sub.add_parser("shuffle", help="write a pre-shuffled multi-epoch training file")
    shuffle.add_argument("--data", help="folder of MNIST-format IDX files, or an .npz file with "
                                        "uint8 x_train and y_train")
    shuffle.add_argument("--epochs", type=_positive_int, required=True)
    shuffle.add_argument("--seed", type=int, default=0)
    shuffle.add_argument("--out", required=True)
    shuffle.add_argument("--memory-limit", type=_memory_size, default=64 * 2**20)

    export = sub.add_parser("export", help="write a saved model as ONNX (needs fastnn[onnx])")
    export.add_argument("model_file")
    export.add_argument("--onnx", required=True, metavar="OUT", help="the ONNX file to write")
    export.add_argument("--probabilities", action="store_true",
                        help="end with the loss's softmax/sigmoid (output = predict_proba)")

    sub.add_parser("info", help="build flags, OpenMP, BLAS, threads")

    config = sub.add_parser("config", help="print a preset as a run file for `train --config`")
    config.add_argument("--model", default="lenet", choices=list(zoo.PRESETS), metavar="NAME")
    config.add_argument("--hidden", type=_positive_int)
    config.add_argument("--lr", type=_positive_float)
    config.add_argument("--seed", type=int, default=0)
    return parser


def main(argv=None):
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        from .commands import run
        return run(args)
    except UsageError as exc:
        from .distributed import launcher_rank
        if launcher_rank() == 0:  # under mpiexec every rank parsed the same arguments: say it once
            print(f"fastnn: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("fastnn: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
