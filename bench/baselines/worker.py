"""One optional peer (jax, onnxruntime, sklearn) on one workload and thread count, in its own
process and interpreter, driven by bench/baselines/peers.py over stdin/stdout (JSON lines).

    python worker.py PEER WORKLOAD THREADS SPEC_DIR STEPS MEASURE_SECONDS

Why a process: a peer lives in its own venv (it never enters fastnn's environment), and its
thread count is fixed when its runtime starts (XLA's CPU client, ONNX Runtime's session), so it
is set here, before the import: CPU affinity to THREADS cores, PJRT_NPROC for XLA, the BLAS
variables and threadpoolctl for sklearn. The weights come from SPEC_DIR (spec.json, weights.npz
and, when the parent had fastnn's exporter, model.onnx); the batches from baselines.cases, the
same call as the parent's, so the same data in the same order.

Requests and answers, one JSON object a line:
    {"op": "train", "mode": M}           -> {"seconds": per step}    (2 untimed steps first)
    {"op": "infer", "mode": M, "batch": B} -> {"seconds": per call}  (calls per measurement
                                                calibrated once to last MEASURE_SECONDS)
    {"op": "check", "mode": M, "data": NPZ, "out": NPZ} -> {} : trains on NPZ's xs/ys (one
        step per batch) or predicts NPZ's x, writes losses/params or the output (tests)
    {"op": "quit"}
The first line answered is {"train": [modes], "infer": [modes], "versions": {...}} or
{"error": "..."} when the peer cannot express the workload.
"""
import json
import os
import sys
import time


def pin_threads(peer, threads):
    """Runs before the peer is imported: its runtime sizes its thread pool when it starts."""
    cpus = sorted(os.sched_getaffinity(0))
    if threads > len(cpus):
        raise ValueError(f"worker: {threads} threads asked for, {len(cpus)} CPUs available")
    os.sched_setaffinity(0, cpus[:threads])
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    if peer == "jax":
        os.environ["JAX_PLATFORMS"] = "cpu"
        os.environ["PJRT_NPROC"] = str(threads)  # XLA CPU client's thread pool size


def timed(fn, calls):
    fn()  # untimed: wakes the threads and caches after the parent's settle pause
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


class Peer:
    """The train and infer modes of one peer; each train mode returns seconds per step."""

    def __init__(self, peer, name, threads, spec_dir, steps, measure_seconds):
        # numpy (and through it, baselines) only now, after pin_threads: OpenBLAS sizes its
        # thread pool from the environment when it loads
        import numpy as np
        from baselines import cases
        with open(os.path.join(spec_dir, "spec.json")) as f:
            self.spec = json.load(f)
        self.np = np
        self.weights = list(np.load(os.path.join(spec_dir, "weights.npz")).values())
        self.name, self.batch, self.threads, self.spec_dir = name, cases.WORKLOADS[name], threads, spec_dir
        self.data = cases.batches(name, steps)
        self.measure_seconds, self.calls = measure_seconds, {}
        self.train, self.infer, self.versions = {}, {}, {}
        getattr(self, "_build_" + peer)()

    def _build_jax(self):
        import jax
        from baselines import jax_nets
        if jax.local_devices()[0].platform != "cpu":
            raise RuntimeError("worker: jax is not running on the CPU")
        self.net = net = jax_nets.Net(self.spec, self.weights)
        dev = net.device_batches(self.data)
        xs, ys = net.stacked(self.data)
        warm = net.stacked(self.data[:2])

        def jit_epoch():
            for x, y in dev[:2]:
                net.train_step(x, y)
            net.block()
            start = time.perf_counter()
            for x, y in dev:
                net.train_step(x, y)
            net.block()  # the steps are dispatched asynchronously: wait for the last
            return (time.perf_counter() - start) / len(dev)

        def scan_epoch():
            net.epoch(*warm)
            net.block()
            start = time.perf_counter()
            net.epoch(xs, ys)
            net.block()
            return (time.perf_counter() - start) / len(dev)
        for run in (jit_epoch, scan_epoch):
            run()  # compiles: the step, the scan at both lengths, outside any measurement
        net.reset(self.weights)  # compiling trained it: start from fastnn's weights like the others
        self.train = {"jax.jit": jit_epoch, "jax.scan": scan_epoch}
        self.infer = {"jax": net.predict}
        import jaxlib
        self.versions = {"jax": jax.__version__, "jaxlib": jaxlib.__version__}

    def _build_onnxruntime(self):
        import onnxruntime
        from baselines import onnx_nets
        exported = os.path.join(self.spec_dir, "model.onnx")
        if os.path.exists(exported):
            with open(exported, "rb") as f:
                graph, source = f.read(), "fastnn.onnx"
        else:
            graph, source = onnx_nets.graph_from_spec(self.spec, self.weights), "baselines.onnx_nets"
        self.net = onnx_nets.Session(graph, self.threads)
        self.infer = {"onnxruntime": self.net.predict}
        self.versions = {"onnxruntime": onnxruntime.__version__, "graph": source}

    def _build_sklearn(self):
        import sklearn
        import threadpoolctl
        from baselines import sklearn_nets
        self.limits = threadpoolctl.threadpool_limits(self.threads)  # held for the process
        self.net = net = sklearn_nets.Net(self.spec, self.weights, self.batch)
        x = self.np.concatenate([x for x, _ in self.data])
        y = self.np.concatenate([y for _, y in self.data])
        x = x.reshape(len(x), -1)
        warm = x[:2 * self.batch], y[:2 * self.batch]

        def epoch():
            net.fit_epoch(*warm)
            start = time.perf_counter()
            net.fit_epoch(x, y)
            return (time.perf_counter() - start) / len(self.data)
        self.train = {"sklearn": epoch}
        self.infer = {"sklearn": lambda xb: net.predict(xb.reshape(len(xb), -1))}
        self.versions = {"sklearn": sklearn.__version__, "threadpoolctl": threadpoolctl.__version__}

    def handle(self, req):
        op = req["op"]
        if op == "train":
            return {"seconds": self.train[req["mode"]]()}
        if op == "infer":
            return {"seconds": self._infer(req["mode"], req["batch"])}
        if op == "check":
            return self._check(req)
        raise ValueError(f"worker: unknown op {op!r}")

    def _infer(self, mode, batch):
        from baselines import cases
        key = (mode, batch)
        if key not in self.calls:
            x = cases.samples(self.name, batch)[0]
            fn = lambda: self.infer[mode](x)  # noqa: E731
            fn()  # warm-up (and compiles, for jax)
            start = time.perf_counter()
            fn()
            once = time.perf_counter() - start
            self.calls[key] = (fn, max(1, min(5000, int(self.measure_seconds / max(once, 1e-7)))))
        fn, calls = self.calls[key]
        return timed(fn, calls)

    def _check(self, req):
        np, data = self.np, self.np.load(req["data"])
        if "x" in data.files:  # a prediction ("sklearn" names a train and an infer mode)
            np.savez(req["out"], output=np.asarray(self.infer[req["mode"]](data["x"])))
            return {}
        net, losses = self.net, []
        if req["mode"] == "jax.scan":
            losses = [float(v) for v in net.epoch(*net.stacked(list(zip(data["xs"], data["ys"]))))]
        else:
            for x, y in zip(data["xs"], data["ys"]):
                x = x.reshape(len(x), -1) if req["mode"] == "sklearn" else x
                losses.append(float(net.train_step(x, y)))
        np.savez(req["out"], losses=np.array(losses), *net.parameters())
        return {}


def main(argv):
    peer, name, threads, spec_dir, steps, measure_seconds = argv
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever the peer prints goes to stderr, never into the protocol
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # bench/, not baselines/
    try:
        pin_threads(peer, int(threads))
        p = Peer(peer, name, int(threads), spec_dir, int(steps), float(measure_seconds))
    except (ValueError, RuntimeError, ImportError) as e:
        protocol.write(json.dumps({"error": f"{type(e).__name__}: {e}"}) + "\n")
        return 1
    protocol.write(json.dumps({"train": list(p.train), "infer": list(p.infer), "versions": p.versions}) + "\n")
    for line in sys.stdin:
        req = json.loads(line)
        if req["op"] == "quit":
            break
        try:
            protocol.write(json.dumps(p.handle(req)) + "\n")
        except (ValueError, KeyError) as e:
            protocol.write(json.dumps({"error": f"{type(e).__name__}: {e}"}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
