"""Export a trained Sequential to ONNX, to serve it with ONNX Runtime or any ONNX consumer.

    from fastnn.onnx import to_onnx
    to_onnx(model, "lenet.onnx", probabilities=True)      # or: fastnn export M --onnx OUT

Needs the optional extra: `pip install "fastnn[onnx]"` (onnx and onnxruntime); `import fastnn`
never imports onnx, and this module imports it only when an export runs.

The graph has one input, "input" (batch, *model.input_shape), and one output, "output"
(batch, *model.output_shape); the batch axis is dynamic ("batch"). Tensors are the model's dtype
(float32 or float64). "output" is what `predict_raw` returns, or with `probabilities=True` what
`predict_proba` returns: the loss's softmax (SoftmaxCrossEntropy) or sigmoid (BinaryCrossEntropy)
as a last node; MSE has none (its probabilities are the raw outputs).

Layers become: Dense -> Gemm (transB=1) + Relu/Sigmoid/Tanh for a fused activation; Conv2D ->
Conv (strides, symmetric pads); MaxPool2D -> MaxPool (no padding, floor); MaxUnpool2D ->
MaxUnpool fed by its pool's Indices output, or, when the pool's windows overlap, a
ScatterElements(reduction="add"), because fastnn sums the values of windows that picked the same
input where ONNX Runtime's MaxUnpool keeps one of them; Flatten -> Flatten(axis=1); ReLU,
Sigmoid, Tanh -> the ONNX op of the same name.

Opset: OPSET (17) by default; any opset from MIN_OPSET (16, for ScatterElements' reduction) to
the installed onnx's newest may be asked for. The IR version is the lowest that opset allows,
so older runtimes load the file.

Where outputs can differ from fastnn: max-pool ties pick the first maximum in row-major order in
both; a NaN inside a pool window wins in fastnn (PyTorch's rule), while ONNX does not define
NaN for MaxPool (ONNX Runtime skips NaN unless it is the window's first element). ONNX Runtime's
CPU provider has no float64 Conv: serve a float64 conv net after `model.copy(dtype=np.float32)`.

A model that cannot be written as ONNX (not built, an unknown layer class, probabilities of a
model without a loss, ...) raises ValueError/TypeError before anything is written; the file is
written atomically (fastnn/atomic.py), so a failed export leaves any previous file in place.
"""
import os

import numpy as np

from ._runtime import _version
from .atomic import atomic_write
from .layers import Conv2D, Dense, Flatten, MaxPool2D, MaxUnpool2D, ReLU, Sigmoid, Tanh
from .losses import MSE, BinaryCrossEntropy, SoftmaxCrossEntropy
from .network import Network

__all__ = ["to_onnx", "to_onnx_proto", "import_onnx", "OPSET", "MIN_OPSET", "INPUT", "OUTPUT"]

OPSET = 17  # ONNX Runtime 1.13+ (the extra asks for 1.17+) runs all of it
MIN_OPSET = 16  # ScatterElements(reduction="add") (unpooling overlapping windows)
INPUT, OUTPUT = "input", "output"
BATCH = "batch"  # the dynamic batch axis's name
INSTALL = 'pip install "fastnn[onnx]"'

# The op of each activation, for activation layers and Dense's fused activation alike.
_ACTIVATION_OPS = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh"}
_ACTIVATION_LAYERS = {ReLU: "Relu", Sigmoid: "Sigmoid", Tanh: "Tanh"}
# The last node of `probabilities=True`, by exact loss class (None: outputs as they are).
_PROBABILITY_OPS = {SoftmaxCrossEntropy: "Softmax", BinaryCrossEntropy: "Sigmoid", MSE: None}


def import_onnx():
    """The onnx package, or an ImportError that says how to install it."""
    try:
        import onnx
        from onnx import helper, numpy_helper  # noqa: F401 - submodules used as onnx.helper
    except ImportError as exc:
        raise ImportError(f"ONNX export needs the onnx package, which is not installed: {INSTALL}"
                          f" ({exc})") from exc
    return onnx


def to_onnx(model, path, *, probabilities=False, opset=OPSET):
    """Write `model` as an ONNX file at `path` (atomically); returns `path`.

    probabilities: end with the loss's softmax/sigmoid, so the output equals predict_proba
    (default: the last layer's raw outputs, as predict_raw). opset: the ONNX opset to target."""
    proto = to_onnx_proto(model, probabilities=probabilities, opset=opset)
    data = proto.SerializeToString()
    with atomic_write(os.fspath(path), "wb") as f:
        f.write(data)
    return path


def to_onnx_proto(model, *, probabilities=False, opset=OPSET):
    """The onnx.ModelProto of `model`, checked with onnx.checker (full check, with shape
    inference); `InferenceSession(proto.SerializeToString())` serves it without a file."""
    onnx = import_onnx()
    _check_exportable(onnx, model, probabilities, opset)
    graph = _Graph(onnx, model.dtype, model.layers)
    x = INPUT
    for i, layer in enumerate(model.layers):
        x = _CONVERTERS[type(layer)](graph, f"{i}_{type(layer).__name__}", layer, layer.get_config(), x)
    if probabilities and _PROBABILITY_OPS[type(model.loss)] is not None:
        x = graph.node(_PROBABILITY_OPS[type(model.loss)], [x], "probabilities")
    graph.node("Identity", [x], "output", output=OUTPUT)
    proto = graph.model(model, opset, probabilities)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _check_exportable(onnx, model, probabilities, opset):
    """Raise before building anything when the graph would not be the model's."""
    if not isinstance(model, Network):
        raise TypeError(f"to_onnx: model must be a fastnn Sequential, got {type(model).__name__}")
    if model.input_shape is None:
        raise ValueError("to_onnx: the model is not built (its input shape is unknown); pass "
                         "input_shape= to Sequential or call model.build(shape) first")
    for i, layer in enumerate(model.layers):
        if type(layer) not in _CONVERTERS:  # exact class: a subclass may compute something else
            raise ValueError(f"to_onnx: layer {i} ({type(layer).__name__}) has no ONNX form; "
                             f"exportable layers: {', '.join(c.__name__ for c in _CONVERTERS)}")
    if not isinstance(probabilities, bool):
        raise TypeError(f"to_onnx: probabilities must be True or False, got {probabilities!r}")
    if probabilities:
        _check_probabilities(model)
    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) \
            or not MIN_OPSET <= opset <= newest:
        raise ValueError(f"to_onnx: opset must be an int in [{MIN_OPSET}, {newest}] (the installed "
                         f"onnx's newest), got {opset!r}")


def _check_probabilities(model):
    if model.loss is None:
        raise ValueError("to_onnx: probabilities=True needs the model's loss (it has none); "
                         "compile the model with a loss or export the raw outputs")
    if type(model.loss) not in _PROBABILITY_OPS:
        raise ValueError(f"to_onnx: probabilities=True: loss {type(model.loss).__name__} has no "
                         f"ONNX form; known: {', '.join(c.__name__ for c in _PROBABILITY_OPS)}")
    output_shape = model.layers[-1].output_shape
    if type(model.loss) is SoftmaxCrossEntropy and len(output_shape) != 1:
        raise ValueError(f"to_onnx: probabilities=True: SoftmaxCrossEntropy needs a flat output "
                         f"(classes,), the model's is {output_shape}")


class _Graph:
    """Nodes and weights being collected, named after the layer that made them."""

    def __init__(self, onnx, dtype, layers):
        self.onnx, self.dtype = onnx, np.dtype(dtype)
        self.nodes, self.weights = [], []
        self.unpooled = {id(layer.pool) for layer in layers if type(layer) is MaxUnpool2D}
        self.pools = {}  # id(MaxPool2D) -> (its input, its Indices output), for its unpools

    def weight(self, name, array):
        self.weights.append(self.onnx.numpy_helper.from_array(np.array(array, self.dtype), name))
        return name

    def constant(self, name, values, dtype=np.int64):
        self.weights.append(self.onnx.numpy_helper.from_array(np.array(values, dtype), name))
        return name

    def node(self, op, inputs, name, outputs=1, output=None, **attributes):
        """Add one node; returns its output name (or names when outputs > 1)."""
        names = [output or name] if outputs == 1 else [f"{name}_{k}" for k in range(outputs)]
        self.nodes.append(self.onnx.helper.make_node(op, inputs, names, name=name, **attributes))
        return names[0] if outputs == 1 else names

    def model(self, model, opset, probabilities):
        helper = self.onnx.helper
        elem = helper.np_dtype_to_tensor_dtype(self.dtype)
        graph = helper.make_graph(
            self.nodes, "fastnn_sequential",
            [helper.make_tensor_value_info(INPUT, elem, [BATCH, *model.input_shape])],
            [helper.make_tensor_value_info(OUTPUT, elem, [BATCH, *model.layers[-1].output_shape])],
            initializer=self.weights)
        opsets = [helper.make_opsetid("", int(opset))]
        proto = helper.make_model(graph, opset_imports=opsets, producer_name="fastnn",
                                  producer_version=_version(),
                                  ir_version=helper.find_min_ir_version_for(opsets),
                                  doc_string=" -> ".join(repr(layer) for layer in model.layers))
        loss = None if model.loss is None else type(model.loss).__name__
        helper.set_model_props(proto, {"fastnn.loss": str(loss),
                                       "fastnn.output": "probabilities" if probabilities else "raw"})
        return proto


# -- one converter per layer class: (graph, name, layer, its get_config(), input name) -> output
# name. Weights come from layer.params, hyper-parameters from the config (what save() writes).
def _dense(g, name, layer, config, x):
    y = g.node("Gemm", [x, g.weight(f"{name}_w", layer.params["w"]),
                        g.weight(f"{name}_b", layer.params["b"])], name, transB=1)
    if config["activation"] is None:
        return y
    return g.node(_ACTIVATION_OPS[config["activation"]], [y], f"{name}_{config['activation']}")


def _conv2d(g, name, layer, config, x):
    ph, pw = config["padding"]
    return g.node("Conv", [x, g.weight(f"{name}_w", layer.params["w"]),
                           g.weight(f"{name}_b", layer.params["b"])], name,
                  kernel_shape=list(config["kernel_size"]), strides=list(config["stride"]),
                  pads=[ph, pw, ph, pw])


def _maxpool2d(g, name, layer, config, x):
    attributes = dict(kernel_shape=list(config["pool_size"]), strides=list(config["stride"]))
    if id(layer) not in g.unpooled:
        return g.node("MaxPool", [x], name, **attributes)
    # Indices (flat over the whole NCHW tensor, row-major) only for a pool an unpool reads:
    # without them ONNX Runtime runs a faster MaxPool.
    y, indices = g.node("MaxPool", [x], name, outputs=2, **attributes)
    g.pools[id(layer)] = (x, indices)
    return y


def _maxunpool2d(g, name, layer, config, x):
    pool_input, indices = g.pools[id(layer.pool)]  # layer.pool: the MaxPool2D object it reads
    # The pool's input shape, batch included: floor pooling may have dropped trailing rows or
    # columns, which MaxUnpool's default output shape would not restore.
    shape = g.node("Shape", [pool_input], f"{name}_shape")
    pool_config = layer.pool.get_config()
    (kh, kw), (sh, sw) = pool_config["pool_size"], pool_config["stride"]
    if sh >= kh and sw >= kw:  # disjoint windows: no input picked twice
        return g.node("MaxUnpool", [x, indices, shape], name, kernel_shape=[kh, kw],
                      strides=[sh, sw])
    flat = g.constant(f"{name}_flat", [-1])
    zeros = g.node("ConstantOfShape", [shape], f"{name}_zeros",
                   value=g.onnx.numpy_helper.from_array(np.zeros(1, g.dtype)))
    summed = g.node("ScatterElements", [g.node("Reshape", [zeros, flat], f"{name}_zeros_flat"),
                                        g.node("Reshape", [indices, flat], f"{name}_indices_flat"),
                                        g.node("Reshape", [x, flat], f"{name}_values_flat")],
                    f"{name}_scatter", axis=0, reduction="add")
    return g.node("Reshape", [summed, shape], name)


def _flatten(g, name, layer, config, x):
    return g.node("Flatten", [x], name, axis=1)


def _activation(g, name, layer, config, x):
    return g.node(_ACTIVATION_LAYERS[type(layer)], [x], name)


_CONVERTERS = {Dense: _dense, Conv2D: _conv2d, MaxPool2D: _maxpool2d, MaxUnpool2D: _maxunpool2d,
               Flatten: _flatten, ReLU: _activation, Sigmoid: _activation, Tanh: _activation}
