"""The peers fastnn is compared with, on the same math: PyTorch (CPU, float32) in torch_nets and
a plain vectorized numpy implementation in numpy_nets (the from-scratch code our users come from).

A fastnn model is described by `spec_of(model)` (a JSON-safe dict: layers, loss, optimizer) and
`weights_of(model)` (w, b per layer, in order), so a peer can be built in a process that never
imports fastnn (the peak-RSS children of bench/compare.py). cases.py holds the workloads,
data and contenders shared by compare.py, bench_compare.py and tests/test_baselines.py.
"""
import numpy as np


def spec_of(model):
    """Architecture, loss and SGD settings of a built fastnn Sequential."""
    layers = []
    for layer in model.layers:
        entry = {"kind": type(layer).__name__, **layer.get_config(),
                 "output_shape": list(layer.output_shape)}
        layers.append(entry)
    opt = model.optimizer.get_config()
    if type(model.optimizer).__name__ != "SGD" or opt.get("weight_decay"):
        raise ValueError("baselines: plain SGD (optionally with momentum) only")
    return {"input_shape": list(model.input_shape), "layers": layers, "loss": model.loss.name,
            "lr": opt["lr"], "momentum": opt["momentum"]}


def weights_of(model):
    """Copies of the parameters: w then b for each layer that has them."""
    return [np.array(layer.params[name]) for layer in model.layers for name in layer.param_shapes]


def train_flops(spec):
    """Floating-point operations of one training step per sample in the convolutions and dense
    products: forward, dW, and dX for every layer but the first with parameters (nothing needs
    the input's gradient). Element-wise passes (bias, activation, pool, loss, SGD) not counted:
    this is the FMA work, the part the machine's FMA peak bounds."""
    total, first, shape = 0, True, spec["input_shape"]
    for layer in spec["layers"]:
        if layer["kind"] == "Dense":
            macs = int(np.prod(shape)) * layer["units"]
        elif layer["kind"] == "Conv2D":
            k, (r, s) = layer["filters"], layer["kernel_size"]
            macs = k * shape[0] * r * s * int(np.prod(layer["output_shape"][1:]))
        else:
            macs = 0
        if macs:
            total += 2 * macs * (2 if first else 3)
            first = False
        shape = layer["output_shape"]
    return total
