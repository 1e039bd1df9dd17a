"""Random valid networks for the composition tests: a hypothesis strategy drawing a `Case` (a
spec in reference/net.py's tuple form, input shape, loss, targets, dtype, batch size, data seed),
and the bridges to fastnn (`build_model`) and to the numpy oracle (`reference_pass`).

Shapes stay small (images up to 2x7x20, up to 3 filters, 300 features, batches up to 5) so
that one example, model and oracle included, takes milliseconds.
"""
from dataclasses import dataclass

import numpy as np
from hypothesis import HealthCheck, settings, strategies as st

import reference as ref
from fastnn import (MSE, BinaryCrossEntropy, Conv2D, Dense, Flatten, MaxPool2D, MaxUnpool2D, ReLU,
                    Sequential, Sigmoid, SoftmaxCrossEntropy, Tanh)

# Derandomized, no example database: CI runs the same examples every time. Slow: `-m slow` tests.
settings.register_profile("composition", max_examples=100, deadline=None, derandomize=True,
                          database=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("composition-slow", settings.get_profile("composition"), max_examples=2000)
SLOW = settings.get_profile("composition-slow")


def normal(examples):
    """The normal run's settings for a property: `examples` derandomized draws."""
    return settings(settings.get_profile("composition"), max_examples=examples)


ACTIVATIONS = ("relu", "sigmoid", "tanh")
# (loss, targets): the loss kinds of reference.net_loss and what the targets are.
LOSS_TARGETS = (("sce", "labels"), ("mse", "labels"), ("mse", "floats"), ("bce", "labels"),
                ("bce", "probabilities"))
# Below this distance from a kink (ReLU at 0, a max-pool near-tie) the model's rounding may pick
# the other side than the float64 oracle: such draws are discarded (Caffe's GradientChecker).
KINK_MARGIN = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-9}
# A gradient is held to the oracle only beyond its rounding noise: this many times its bound
# (reference.gradient_bound, the sum of |terms|): float32 ~80 eps, float64 ~450 eps (sums over
# hundreds of terms, several layers deep).
NOISE = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-13}


@dataclass(frozen=True)
class Case:
    spec: tuple
    input_shape: tuple
    loss: str
    targets: str
    dtype: np.dtype
    batch: int
    seed: int

    def code(self):
        """The network as fastnn code, for failure reports."""
        return f"Sequential([{', '.join(_layer_code(item) for item in self.spec)}], " \
               f"loss={_LOSSES[self.loss].__name__}(), input_shape={self.input_shape}, " \
               f"dtype=np.{np.dtype(self.dtype).name})  # {self.targets}, batch {self.batch}"


def _layer_code(item):
    kind = item[0]
    if kind == "dense":
        return f"Dense({item[1]}, {item[2]!r})"
    if kind == "conv":
        return f"Conv2D({item[1]}, {item[2]}, stride={item[3]}, padding={item[4]})"
    if kind == "pool":
        return f"MaxPool2D({item[1]}, stride={item[2]})"
    if kind == "unpool":
        return f"MaxUnpool2D({item[1]} as {item[2]})"
    return {"flatten": "Flatten()", "relu": "ReLU()", "sigmoid": "Sigmoid()", "tanh": "Tanh()"}[kind]


# -- drawing layers ----------------------------------------------------------------------------
def _conv(draw, shape):
    _, h, w = shape
    pad = (draw(st.integers(0, 1)), draw(st.integers(0, 1)))
    kernel = (draw(st.integers(1, min(3, h + 2 * pad[0]))), draw(st.integers(1, min(3, w + 2 * pad[1]))))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    return ("conv", draw(st.integers(1, 3)), kernel, stride, pad)


def _pool(draw, shape):
    """Windows up to 3x3, strides up to 3: overlapping (stride < window), tiling, and gapped."""
    _, h, w = shape
    kernel = (draw(st.integers(1, min(3, h))), draw(st.integers(1, min(3, w))))
    return ("pool", kernel, (draw(st.integers(1, 3)), draw(st.integers(1, 3))))


def _body_layer(draw, spec, shapes, input_shape):
    shape = shapes[-1] if shapes else input_shape
    kinds = ["relu", "sigmoid", "tanh", "flatten"]
    if len(shape) == 3:
        kinds += ["conv", "conv", "pool", "pool"]
        pools = [i for i, item in enumerate(spec) if item[0] == "pool" and shapes[i] == shape]
        if pools:
            kinds += ["unpool", "unpool"]
    else:
        kinds += ["dense", "dense"]
    kind = draw(st.sampled_from(kinds))
    if kind == "conv":
        return _conv(draw, shape)
    if kind == "pool":
        return _pool(draw, shape)
    if kind == "unpool":
        return ("unpool", draw(st.sampled_from(pools)), draw(st.sampled_from(["layer", "index"])))
    if kind == "dense":
        return ("dense", draw(st.integers(1, 5)), draw(st.sampled_from((None,) + ACTIVATIONS)))
    return (kind,)


def _activations(draw, at_most):
    return [(kind,) for kind in draw(st.lists(st.sampled_from(ACTIVATIONS), max_size=at_most))]


# Mostly tiny; sometimes wide enough for the kernels' other paths: the direct convolution
# (output width >= 8), the 2x2 pool's vector rows, the small GEMM (>= 64 inputs, batch <= 32).
_WIDTHS = st.one_of(st.integers(2, 7), st.integers(8, 20))
FEATURES = st.one_of(st.integers(1, 6), st.integers(60, 300))


@st.composite
def cases(draw, dtypes=(np.float32, np.float64), max_body=5, max_batch=5, wide=True):
    """A valid network: a random body of any layers, then a head the loss accepts. wide=False:
    only the tiny shapes."""
    if draw(st.booleans()):
        input_shape = (draw(st.integers(1, 2)), draw(st.integers(2, 7)),
                       draw(_WIDTHS if wide else st.integers(2, 7)))
    else:
        input_shape = (draw(FEATURES if wide else st.integers(1, 6)),)
    spec, shapes = [], []
    for _ in range(draw(st.integers(0, max_body))):
        spec.append(_body_layer(draw, spec, shapes, input_shape))
        shapes = ref.output_shapes(spec, input_shape)
    loss, targets = draw(st.sampled_from(LOSS_TARGETS))
    shape = shapes[-1] if shapes else input_shape
    if loss != "mse" or targets == "labels" or not spec or draw(st.booleans()):
        if len(shape) == 3:
            spec += [("flatten",)] + _activations(draw, 2)
        units = 1 if loss == "bce" else draw(st.integers(2, 4))
        spec += [("dense", units, draw(st.sampled_from((None,) + ACTIVATIONS)))] + _activations(draw, 2)
    return Case(tuple(spec), input_shape, loss, targets, np.dtype(draw(st.sampled_from(dtypes))),
                draw(st.integers(1, max_batch)), draw(st.integers(0, 2**31 - 1)))


# -- the fastnn side ---------------------------------------------------------------------------
_LOSSES = {"sce": SoftmaxCrossEntropy, "mse": MSE, "bce": BinaryCrossEntropy}
_SIMPLE = {"flatten": Flatten, "relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh}


def build_model(case, optimizer=None):
    """The fastnn Sequential of `case`, built, with weights and biases drawn from its seed (the
    biases nonzero, so every term of the forward is exercised)."""
    layers = []
    for item in case.spec:
        kind = item[0]
        if kind == "dense":
            layers.append(Dense(item[1], item[2]))
        elif kind == "conv":
            layers.append(Conv2D(item[1], item[2], stride=item[3], padding=item[4]))
        elif kind == "pool":
            layers.append(MaxPool2D(item[1], stride=item[2]))
        elif kind == "unpool":
            layers.append(MaxUnpool2D(item[1] if item[2] == "index" else layers[item[1]]))
        else:
            layers.append(_SIMPLE[kind]())
    model = Sequential(layers, loss=_LOSSES[case.loss](), optimizer=optimizer,
                       input_shape=case.input_shape, dtype=case.dtype, seed=case.seed)
    rng = np.random.default_rng(case.seed + 1)
    model.params += (0.1 * rng.standard_normal(model.params.size)).astype(case.dtype)
    return model


def make_data(case, n=None):
    """(x, targets) for `case`: x in the model's dtype, targets as the loss takes them."""
    n = case.batch if n is None else n
    rng = np.random.default_rng(case.seed + 2)
    x = rng.standard_normal((n,) + case.input_shape).astype(case.dtype)
    out = ref.output_shapes(case.spec, case.input_shape)[-1] if case.spec else case.input_shape
    if case.targets == "labels":
        y = rng.integers(0, 2 if case.loss == "bce" else out[0], n)
    elif case.targets == "probabilities":
        y = rng.random((n, 1)).astype(case.dtype)
    else:
        y = rng.standard_normal((n,) + tuple(out)).astype(case.dtype)
    return x, y


# -- the oracle side ---------------------------------------------------------------------------
def reference_pass(case, flat_params, x, y):
    """The oracle's {"output", "loss", "grads" (flat, fastnn's order), "noise" (the gradients'
    rounding noise in case.dtype, flat), "margin" (see net_forward)} at these parameters."""
    params = ref.split_params(case.spec, case.input_shape, flat_params)
    output, cache = ref.net_forward(case.spec, params, x)
    loss, dout = ref.net_loss(case.loss, output, y)
    grads, _ = ref.net_backward(case.spec, params, cache, dout)
    # The loss gradient is a difference of O(1) numbers per sample (softmax - one-hot, output -
    # target), rounded to eps absolute even where it nearly cancels (a loss driven to ~0).
    dout_bound = 1 / len(output) + np.abs(output) / len(output) + np.abs(dout)
    bound = ref.join_params(ref.gradient_bound(case.spec, params, cache, dout_bound))
    return {"output": output, "loss": loss, "grads": ref.join_params(grads),
            "noise": NOISE[case.dtype] * bound, "margin": cache["margin"]}


def param_slices(case):
    """(name, slice of the flat arrays) per parameter array, for per-array error reports."""
    result, offset = [], 0
    for i, shapes in enumerate(ref.param_shapes(case.spec, case.input_shape)):
        for name, shape in shapes.items():
            size = int(np.prod(shape))
            result.append((f"{i}.{case.spec[i][0]}.{name}", slice(offset, offset + size)))
            offset += size
    return result


def scaled_error(got, want, floor, slack=0.0):
    """max (|got - want| - slack) / max(max |want|, floor): an array judged on its own scale, tiny
    arrays on the floor's (the whole network's scale), as fastnn.gradcheck does. `slack`: what
    each entry may be off regardless (e.g. its rounding)."""
    want = np.asarray(want, np.float64)
    if want.size == 0:
        return 0.0
    scale = max(float(np.max(np.abs(want))), floor, 1e-300)
    excess = np.abs(np.asarray(got, np.float64) - want) - slack
    return max(float(np.max(excess)), 0.0) / scale
