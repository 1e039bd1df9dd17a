"""Training: the fit loop (loop.py), the run's state (state.py), where batches come from
(sources.py), callbacks (callbacks.py) and checkpoints (checkpoint.py). Uses only a model's
public methods; imports no model class."""
