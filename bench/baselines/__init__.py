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
