"""Inference with ONNX Runtime (CPU provider, graph optimisation ALL) on the same network.

The graph comes from fastnn's own exporter (`fastnn.onnx.to_onnx`) when the process that
builds the spec has it (bench/compare.py writes it beside the spec); else `graph_from_spec`
builds it here from `baselines.spec_of(model)` and the weights with onnx's helper API:
Dense -> Gemm(transB=1) + activation, Conv2D -> Conv, MaxPool2D -> MaxPool, Flatten -> Flatten.
The output is the last layer's raw output, what fastnn's predict_raw returns.

Import only where onnx/onnxruntime are installed: they are never fastnn dependencies.
"""
import numpy as np

OPSET = 17
IR_VERSION = 8  # the lowest IR that opset 17 allows: older runtimes load the graph too
ACTIVATION_OPS = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh"}


def graph_from_spec(spec, weights):
    """The serialized ONNX model (bytes) of `spec` with `weights` (float32)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    weights, nodes, inits = iter(weights), [], []
    x = "input"

    def add(op, inputs, **attrs):
        out = f"t{len(nodes)}"
        nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def param(name):
        inits.append(numpy_helper.from_array(np.asarray(next(weights), np.float32), name))
        return name

    for i, layer in enumerate(spec["layers"]):
        kind = layer["kind"]
        if kind == "Dense":
            x = add("Gemm", [x, param(f"w{i}"), param(f"b{i}")], transB=1)
            if layer["activation"]:
                x = add(ACTIVATION_OPS[layer["activation"]], [x])
        elif kind == "Conv2D":
            ph, pw = layer["padding"]
            x = add("Conv", [x, param(f"w{i}"), param(f"b{i}")], kernel_shape=layer["kernel_size"],
                    strides=layer["stride"], pads=[ph, pw, ph, pw])
        elif kind == "MaxPool2D":
            x = add("MaxPool", [x], kernel_shape=layer["pool_size"], strides=layer["stride"])
        elif kind == "Flatten":
            x = add("Flatten", [x], axis=1)
        elif kind in ("ReLU", "Sigmoid", "Tanh"):
            x = add(ACTIVATION_OPS[kind.lower()], [x])
        else:
            raise ValueError(f"onnx baseline: no layer {kind!r}")
    nodes[-1].output[0] = "output"
    graph = helper.make_graph(
        nodes, "fastnn_baseline",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch"] + spec["input_shape"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch"] + spec["layers"][-1]["output_shape"])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)
    onnx.checker.check_model(model)
    return model.SerializeToString()


class Session:
    """predict(x) through an ONNX Runtime session on `threads` intra-op threads."""

    def __init__(self, model_bytes, threads):
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def predict(self, x):
        return self.session.run(None, {self.input: np.ascontiguousarray(x, np.float32)})[0]
