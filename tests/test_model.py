"""Sequential: gradients, buffers, determinism, any-batch inference, save/load."""
import tracemalloc

import numpy as np
import pytest

import fastnn
from fastnn import (MSE, SGD, Adam, BinaryCrossEntropy, Conv2D, Dense, Flatten, MaxPool2D,
                    MaxUnpool2D, RandomSearch, ReLU, Sequential, Sigmoid, SoftmaxCrossEntropy, Tanh)


def small_cnn(seed=0, dtype=np.float32):
    layers = [Conv2D(3, 3, padding=1), ReLU(), MaxPool2D(2), Conv2D(4, (2, 3), stride=(1, 2)), Tanh(),
              Flatten(), Dense(6, init="glorot"), Sigmoid(), Dense(3)]
    return Sequential(layers, loss=SoftmaxCrossEntropy(), optimizer=SGD(0.1, momentum=0.9),
                      input_shape=(2, 8, 10), dtype=dtype, seed=seed)


def test_gradcheck_cnn_every_parameter(rng):
    model = small_cnn()
    x = rng.standard_normal((3, 2, 8, 10))
    y = np.array([0, 2, 1])
    result = fastnn.gradcheck(model, x, y)
    assert len(result["per_param"]) == 8
    assert result["max_rel_error"] < 1e-5, result


@pytest.mark.parametrize("loss,last,y", [
    (MSE(), [Dense(4), Sigmoid()], np.array([0, 3, 1, 2, 0])),
    (MSE(), [Dense(4)], np.random.default_rng(0).standard_normal((5, 4))),
    (BinaryCrossEntropy(), [Dense(1)], np.array([0, 1, 1, 0, 1])),
    (SoftmaxCrossEntropy(), [Dense(4)], np.array([0, 3, 1, 2, 0])),
])
def test_gradcheck_mlp_losses(loss, last, y, rng):
    model = Sequential([Dense(7, init="glorot"), Tanh()] + last, loss=loss, optimizer=SGD(0.1),
                       input_shape=(6,), seed=1)
    assert fastnn.gradcheck(model, rng.standard_normal((5, 6)), y)["max_rel_error"] < 1e-5


def test_gradcheck_through_unpooling(rng):
    pool = MaxPool2D(2)
    model = Sequential([Conv2D(2, 3, padding=1), pool, MaxUnpool2D(pool), Flatten(), Dense(3)],
                       loss=SoftmaxCrossEntropy(), optimizer=SGD(0.1), input_shape=(1, 6, 6), seed=2)
    assert fastnn.gradcheck(model, rng.standard_normal((2, 1, 6, 6)), np.array([1, 2]))["max_rel_error"] < 1e-5


def test_training_reduces_loss_and_history_is_filled(rng):
    x = rng.standard_normal((200, 2, 8, 10)).astype(np.float32)
    y = (x[:, 0, :4].sum(axis=(1, 2)) > 0).astype(np.int64) + (x[:, 1].sum(axis=(1, 2)) > 2)
    model = small_cnn()
    history = model.fit(x, y, epochs=8, batch_size=20, validation_data=(x, y), verbose=0, seed=0)
    assert len(history.step_loss) == 80 and len(history.epoch_val_accuracy) == 8
    assert np.mean(history.step_loss[-10:]) < np.mean(history.step_loss[:10])
    assert history.epoch_val_accuracy[-1] > 0.6
    assert all(s > 0 for s in history.samples_per_second)


def test_same_seed_gives_bit_identical_weights(rng):
    x = rng.standard_normal((60, 2, 8, 10)).astype(np.float32)
    y = rng.integers(0, 3, 60)
    runs = []
    for _ in range(2):
        model = small_cnn(seed=5)
        model.fit(x, y, epochs=2, batch_size=16, seed=3, verbose=0)
        runs.append(model.params.copy())
    assert np.array_equal(runs[0], runs[1])
    other = small_cnn(seed=6)
    assert not np.array_equal(runs[0], other.params)


def test_predict_any_batch_size_matches(rng):
    model = small_cnn()
    x = rng.standard_normal((37, 2, 8, 10)).astype(np.float32)
    full = model.predict_proba(x, batch_size=37)
    for bs in (1, 5, 64):
        np.testing.assert_allclose(model.predict_proba(x, batch_size=bs), full, rtol=1e-5, atol=1e-6)
    assert np.allclose(full.sum(axis=1), 1, atol=1e-5)
    assert model.predict(x[:1]).shape == (1,)


def numpy_allocations_during(step, warm_up=3, repeats=20):
    """Numpy allocations still alive after `repeats` calls of step() that follow a warm-up."""
    for _ in range(warm_up):
        step()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for _ in range(repeats):
            step()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    domain = tracemalloc.DomainFilter(True, np.lib.tracemalloc_domain)
    return [s for s in after.filter_traces([domain]).compare_to(before.filter_traces([domain]), "lineno")
            if s.size_diff > 0 or s.count_diff > 0]


def test_steady_state_training_step_allocates_no_numpy_arrays(rng):
    model = small_cnn()
    x = rng.standard_normal((16, 2, 8, 10)).astype(np.float32)
    y = rng.integers(0, 3, 16)
    assert numpy_allocations_during(lambda: model.train_step(x, y)) == []


def test_save_load_round_trip_predicts_identically(tmp_path, rng):
    model = small_cnn(seed=4)
    x = rng.standard_normal((10, 2, 8, 10)).astype(np.float32)
    model.fit(x, rng.integers(0, 3, 10), epochs=1, batch_size=5, verbose=0)
    path = tmp_path / "m.fastnn"
    model.save(path)
    loaded = fastnn.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(x, batch_size=len(x)), model.predict_proba(x, batch_size=len(x)))
    np.testing.assert_array_equal(loaded.optimizer.velocity, model.optimizer.velocity)
    assert [type(l) for l in loaded.layers] == [type(l) for l in model.layers]


def test_save_load_keeps_unpool_link_and_adam_state(tmp_path, rng):
    pool = MaxPool2D(2)
    model = Sequential([Conv2D(2, 3, padding=1), pool, MaxUnpool2D(pool), Flatten(), Dense(3)],
                       loss=SoftmaxCrossEntropy(), optimizer=Adam(1e-2), input_shape=(1, 6, 6), seed=2)
    x = rng.standard_normal((4, 1, 6, 6)).astype(np.float32)
    model.fit(x, np.array([0, 1, 2, 0]), epochs=2, batch_size=2, verbose=0)
    model.save(tmp_path / "u.fastnn")
    loaded = fastnn.load(tmp_path / "u.fastnn")
    assert loaded.layers[2].pool is loaded.layers[1]
    assert loaded.optimizer.t == model.optimizer.t == 4
    np.testing.assert_array_equal(loaded.predict_proba(x, batch_size=len(x)), model.predict_proba(x, batch_size=len(x)))


@pytest.mark.parametrize("content", [b"", b"not a zip at all", b"PK\x03\x04garbage"])
def test_load_rejects_foreign_files(tmp_path, content):
    path = tmp_path / "bad.fastnn"
    path.write_bytes(content)
    with pytest.raises(fastnn.ModelFileError, match="bad.fastnn"):
        fastnn.load(path)


def test_load_rejects_truncated_file_and_save_keeps_old_file_on_error(tmp_path):
    model = small_cnn()
    path = tmp_path / "m.fastnn"
    model.save(path)
    data = path.read_bytes()
    (tmp_path / "t.fastnn").write_bytes(data[: len(data) // 2])
    with pytest.raises(fastnn.ModelFileError):
        fastnn.load(tmp_path / "t.fastnn")
    np.savez(tmp_path / "foreign.npz", params=np.zeros(3))
    with pytest.raises(fastnn.ModelFileError, match="architecture"):
        fastnn.load(tmp_path / "foreign.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign.npz", "m.fastnn", "t.fastnn"]


def test_random_search_lowers_loss_without_gradients(rng):
    x = rng.standard_normal((50, 2)).astype(np.float32)
    y = (x[:, 0] * x[:, 1] > 0).astype(np.int64)
    model = Sequential([Dense(6, init="glorot"), Sigmoid(), Dense(1)], loss=BinaryCrossEntropy(),
                       optimizer=RandomSearch(step=0.2, seed=0), input_shape=(2,), seed=0)
    history = model.fit(x, y, epochs=300, batch_size=50, verbose=0)
    assert history.step_loss[-1] < history.step_loss[0] - 0.1
    assert all(b <= a + 1e-6 for a, b in zip(history.step_loss, history.step_loss[1:]))


def test_early_stopping_loss_threshold(rng):
    x = rng.standard_normal((40, 2)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    model = Sequential([Dense(4), Tanh(), Dense(1)], loss=BinaryCrossEntropy(), optimizer=SGD(1.0),
                       input_shape=(2,), seed=0)
    history = model.fit(x, y, epochs=1000, batch_size=40, verbose=0,
                        callbacks=[fastnn.EarlyStopping(loss_threshold=0.2)])
    assert history.step_loss[-1] < 0.2 and len(history.step_loss) < 1000
    assert "0.2" in history.stopped_reason


def test_divergence_raises_naming_the_step():
    x = np.full((4, 2), 1e30, np.float32)
    model = Sequential([Dense(2)], loss=MSE(), optimizer=SGD(1e10), input_shape=(2,), seed=0)
    with pytest.raises(fastnn.TrainingDiverged, match="step"):
        model.fit(x, np.ones((4, 2), np.float32), epochs=5, batch_size=4, verbose=0)


def test_bad_data_and_arguments_raise_clear_errors(rng):
    model = small_cnn()
    with pytest.raises(ValueError, match="per-sample shape"):
        model.fit(np.zeros((4, 1, 8, 10), np.float32), np.zeros(4, np.int64), verbose=0)
    with pytest.raises(ValueError, match="labels"):
        model.fit(np.zeros((4, 2, 8, 10), np.float32), np.array([0, 1, 5, 0]), verbose=0)
    with pytest.raises(ValueError, match="samples"):
        model.fit(np.zeros((4, 2, 8, 10), np.float32), np.zeros(3, np.int64), verbose=0)
    with pytest.raises(ValueError, match="epochs"):
        model.fit(np.zeros((4, 2, 8, 10), np.float32), np.zeros(4, np.int64), epochs=-1, verbose=0)
    with pytest.raises(ValueError, match="Flatten"):
        Sequential([Dense(3)], input_shape=(1, 4, 4))
    with pytest.raises(ValueError, match="units"):
        Dense(0)
    with pytest.raises(ValueError, match="init"):
        Dense(3, init="zeros")


def test_summary_lists_layers_and_parameter_counts():
    text = small_cnn().summary(print_fn=lambda s: None)
    assert "Conv2D" in text and "parameters" in text
    assert f"{small_cnn().num_params:,}" in text


@pytest.mark.parametrize("activation,layer", [("relu", ReLU), ("sigmoid", Sigmoid), ("tanh", Tanh)])
def test_fused_dense_activation_equals_separate_layer_and_passes_gradcheck(activation, layer, rng):
    fused = Sequential([Dense(5, activation, init="glorot"), Dense(3)], loss=SoftmaxCrossEntropy(),
                       optimizer=SGD(0.5), input_shape=(4,), seed=3)
    split = Sequential([Dense(5, init="glorot"), layer(), Dense(3)], loss=SoftmaxCrossEntropy(),
                       optimizer=SGD(0.5), input_shape=(4,), seed=3)
    x, y = rng.standard_normal((16, 4)).astype(np.float32), rng.integers(0, 3, 16)
    np.testing.assert_array_equal(fused.params, split.params)
    for model in (fused, split):
        model.fit(x, y, epochs=3, batch_size=4, verbose=0, seed=1)
    np.testing.assert_allclose(fused.params, split.params, rtol=1e-5, atol=1e-6)
    assert fastnn.gradcheck(fused, x[:4].astype(np.float64), y[:4])["max_rel_error"] < 1e-5


def test_mse_with_int_labels_equals_mse_with_one_hot_targets(rng):
    out = rng.random((6, 4)).astype(np.float32)
    labels = rng.integers(0, 4, 6)
    by_label, by_onehot = MSE(), MSE()
    loss_a = by_label(out, labels)
    loss_b = by_onehot(out, np.eye(4, dtype=np.float32)[labels])
    assert loss_a == pytest.approx(loss_b, rel=1e-6)
    np.testing.assert_allclose(by_label.grad, by_onehot.grad, rtol=1e-6)


def test_history_files_and_quiet_progress_when_not_a_tty(tmp_path, rng, capsys):
    x = rng.standard_normal((40, 2)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    model = Sequential([Dense(4, "tanh"), Dense(2)], loss=SoftmaxCrossEntropy(), optimizer=SGD(0.5),
                       input_shape=(2,), seed=0)
    callbacks = [fastnn.HistoryWriter(tmp_path / "h.csv"), fastnn.HistoryWriter(tmp_path / "h.json")]
    history = model.fit(x, y, epochs=3, batch_size=10, validation_data=(x, y), callbacks=callbacks, verbose=1)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""  # pytest's capture is not a TTY: no bar
    rows = (tmp_path / "h.csv").read_text().strip().splitlines()
    assert rows[0].startswith("epoch,") and len(rows) == 4
    import json
    saved = json.loads((tmp_path / "h.json").read_text())
    assert saved["epoch_val_accuracy"] == history.epoch_val_accuracy and len(saved["step_loss"]) == 12
    with pytest.raises(ValueError, match="csv"):
        fastnn.HistoryWriter(tmp_path / "h.txt")


def test_smaller_batch_reuses_the_larger_batch_buffers(rng):
    x = rng.standard_normal((21, 2, 8, 10)).astype(np.float32)
    y = rng.integers(0, 3, 21)
    model, fresh = small_cnn(seed=9), small_cnn(seed=9)
    model.train_step(x[:16], y[:16])
    fresh.train_step(x[:16], y[:16])
    tracemalloc.start()
    model.train_step(x[16:], y[16:])  # an epoch's last, short batch: views, no new arrays
    snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.DomainFilter(True, np.lib.tracemalloc_domain)])
    tracemalloc.stop()
    assert sum(stat.size for stat in snapshot.statistics("filename")) < 1024
    fresh_small = small_cnn(seed=9)
    fresh_small.params[...] = fresh.params
    fresh_small.optimizer.velocity[...] = fresh.optimizer.velocity
    fresh_small.train_step(x[16:], y[16:])
    np.testing.assert_allclose(model.params, fresh_small.params, rtol=1e-6, atol=1e-7)


# -- the one-call train step of float32 Dense stacks (src_c/train_step.pyx) ---------------------
def _dense_stack(loss, optimizer):
    return Sequential([Dense(20, "tanh", init="glorot"), Dense(16, "relu"), Dense(5, "sigmoid")],
                      loss=loss, optimizer=optimizer, input_shape=(12,), seed=3)


@pytest.mark.parametrize("num_threads", [1, 2])
@pytest.mark.parametrize("loss,optimizer,exact", [
    # Plain SGD is applied by the dW GEMM itself (alpha = -lr, beta = 1): the same formula,
    # but the compiler may round w - lr * dw once or twice, so the last bit may differ.
    (SoftmaxCrossEntropy, lambda: SGD(0.1), False),
    (MSE, lambda: SGD(0.5, momentum=0.9, weight_decay=1e-3), True),
    (SoftmaxCrossEntropy, lambda: Adam(0.01), True),
    (SoftmaxCrossEntropy, lambda: Adam(0.01, weight_decay=1e-3), True),
])
def test_fused_dense_step_matches_layer_by_layer(loss, optimizer, exact, num_threads, rng, threads):
    threads(num_threads)
    fused, layered = _dense_stack(loss(), optimizer()), _dense_stack(loss(), optimizer())
    layered._fused_steps = None  # forces the layer-by-layer path
    x = rng.random((90, 12), dtype=np.float32)
    y = rng.integers(0, 5, 90)
    for start in range(0, 90, 32):  # includes a short last batch (26)
        xb, yb = x[start:start + 32], y[start:start + 32]
        fused_loss, layered_loss = fused.train_step(xb, yb), layered.train_step(xb, yb)
        if exact:
            assert fused_loss == layered_loss and fused.last_correct == layered.last_correct
        else:
            assert fused_loss == pytest.approx(layered_loss, rel=1e-5)
    assert sorted(fused._fused_steps) == [26, 32]  # the fused path really ran
    assert not any(step.tiny for step in fused._fused_steps.values())  # the GEMM kernels ran
    if exact:
        np.testing.assert_array_equal(fused.params, layered.params)
    else:
        np.testing.assert_allclose(fused.params, layered.params, rtol=1e-5, atol=1e-6)
    if isinstance(fused.optimizer, Adam):
        assert fused.optimizer.t == layered.optimizer.t == 3


def test_fused_plain_sgd_matches_layer_by_layer_on_the_presets(rng):
    from fastnn import zoo
    for name, batch in (("nielsen", 10), ("spiral", 30)):
        fused, layered = zoo.get(name).build(seed=0), zoo.get(name).build(seed=0)
        layered._fused_steps = None
        x = rng.random((batch * 20, fused.input_shape[0]), dtype=np.float32)
        y = rng.integers(0, fused.output_shape[0], batch * 20)
        for start in range(0, len(x), batch):
            fused.train_step(x[start:start + batch], y[start:start + batch])
            layered.train_step(x[start:start + batch], y[start:start + batch])
        np.testing.assert_allclose(fused.params, layered.params, rtol=1e-4, atol=1e-5, err_msg=name)


def _sparse_columns_batch(rng, rows=64, inputs=12):
    # MNIST-like: some input columns are 0 in every row of the batch, one is -0.0
    x = rng.random((rows, inputs), dtype=np.float32)
    x[:, [0, 1, 5, 9, 10]] = 0
    x[:, 7] = -0.0
    x[rng.random((rows, inputs)) < 0.5] = 0  # scattered zeros that must not be skipped
    return x, rng.integers(0, 5, rows)


@pytest.mark.parametrize("num_threads", [1, 2])
@pytest.mark.parametrize("optimizer", [lambda: SGD(0.1), lambda: SGD(0.5, momentum=0.9, weight_decay=1e-3),
                                       lambda: Adam(0.01)], ids=["sgd", "momentum", "adam"])
def test_fused_step_skipping_zero_columns_matches_layer_by_layer(optimizer, num_threads, rng, threads):
    threads(num_threads)
    fused, layered = _dense_stack(SoftmaxCrossEntropy(), optimizer()), _dense_stack(SoftmaxCrossEntropy(), optimizer())
    layered._fused_steps = None
    w_before = fused.layers[0].params["w"].copy()
    for _ in range(3):
        x, y = _sparse_columns_batch(rng)
        assert fused.train_step(x, y) == pytest.approx(layered.train_step(x, y), rel=1e-5)
        assert fused.last_correct == layered.last_correct
    assert fused._fused_steps[64].last_kept_columns == 6  # the 6 other columns were skipped
    np.testing.assert_allclose(fused.params, layered.params, rtol=1e-5, atol=1e-6)
    skipped = [0, 1, 5, 7, 9, 10]
    if isinstance(fused.optimizer, SGD) and fused.optimizer.momentum == 0:
        # plain SGD never touches the skipped weights (their gradient is exactly 0)
        np.testing.assert_array_equal(fused.layers[0].params["w"][:, skipped], w_before[:, skipped])
    else:
        np.testing.assert_array_equal(fused.layers[0].grads["w"][:, skipped], 0)


def test_fused_step_skips_zero_columns_only_where_it_pays_and_never_hides_nan(rng):
    model = _dense_stack(SoftmaxCrossEntropy(), SGD(0.1))
    x, y = _sparse_columns_batch(rng)
    model.train_step(x[:16], y[:16])  # 16 rows: the small GEMMs run, nothing to gain
    assert model._fused_steps[16].last_kept_columns == 12
    dense_x = rng.random((64, 12), dtype=np.float32) + 0.5
    model.train_step(dense_x, y)  # no all-zero column
    assert model._fused_steps[64].last_kept_columns == 12
    model._fused_steps[64].columns = "all"
    model.train_step(x, y)
    assert model._fused_steps[64].last_kept_columns == 12
    model._fused_steps[64].columns = "skip-zero"
    # A NaN weight on a skipped column: the full GEMM runs, so the loss shows it (as the layer
    # path's 0 * NaN does) instead of training on silently.
    model.layers[0].params["w"][3, 0] = np.nan
    assert np.isnan(model.train_step(x, y))
    assert model._fused_steps[64].last_kept_columns == 12


def test_fused_dense_step_falls_back_where_it_does_not_apply(rng):
    model = _dense_stack(MSE(), SGD(0.1))
    x = rng.random((8, 12), dtype=np.float32)
    model.train_step(x, rng.random((8, 5)))                     # float targets
    assert model._fused_steps == {}
    assert small_cnn()._fused_steps is None                     # not a Dense stack
    assert _dense_stack(MSE(), RandomSearch(0.1))._fused_steps is None


def test_fused_dense_step_refuses_out_of_range_labels(rng):
    model = _dense_stack(SoftmaxCrossEntropy(), SGD(0.1))
    x = rng.random((8, 12), dtype=np.float32)
    with pytest.raises(ValueError, match="labels must be in"):
        model.train_step(x, np.array([0, 1, 2, 3, 4, 5, 0, 1]))
    with pytest.raises(ValueError, match="labels must be in"):
        model.train_step(x, np.array([0, 1, 2, 3, 4, -1, 0, 1]))


def test_fused_dense_step_allocates_no_numpy_arrays(rng):
    model = _dense_stack(SoftmaxCrossEntropy(), SGD(0.1, momentum=0.9))
    x, y = rng.random((16, 12), dtype=np.float32), rng.integers(0, 5, 16)
    assert numpy_allocations_during(lambda: model.train_step(x, y)) == []
    assert model._fused_steps


def test_inference_chunks_keep_layer_buffers_under_the_budget(rng, monkeypatch):
    import fastnn.network
    model = small_cnn()
    x = rng.standard_normal((300, 2, 8, 10)).astype(np.float32)
    want = model.predict_raw(x, batch_size=7)
    monkeypatch.setattr(fastnn.network, "EVAL_BUFFER_BYTES", 40 * model._sample_bytes)
    for layer in model.layers:
        layer.release_buffers()
    # GEMM blocking depends on the chunk: equal up to float32 rounding
    np.testing.assert_allclose(model.predict_raw(x, batch_size=300), want, rtol=1e-5, atol=1e-6)
    assert max(n for layer in model.layers for n in layer._buffers) == 40
    assert model.evaluate(x, rng.integers(0, 3, 300), batch_size=1000)["total"] == 300


def test_fit_with_uint8_labels_takes_the_fused_step_and_matches_int64(rng):
    x, y = rng.random((64, 12), dtype=np.float32), rng.integers(0, 5, 64)
    a, b = _dense_stack(SoftmaxCrossEntropy(), SGD(0.1)), _dense_stack(SoftmaxCrossEntropy(), SGD(0.1))
    a.fit(x, y.astype(np.uint8), epochs=2, batch_size=16, seed=1, verbose=0)
    b.fit(x, y, epochs=2, batch_size=16, seed=1, verbose=0)
    assert a._fused_steps and sorted(a._fused_steps) == [16]
    np.testing.assert_array_equal(a.params, b.params)


@pytest.mark.parametrize("loss", [SoftmaxCrossEntropy, MSE])
@pytest.mark.parametrize("optimizer", [lambda: SGD(0.5), lambda: SGD(0.1, momentum=0.9, weight_decay=1e-3),
                                       lambda: Adam(0.01)], ids=["sgd", "momentum", "adam"])
def test_tiny_dense_step_matches_layer_by_layer(loss, optimizer, rng):
    """Stacks of at most TINY_STEP_MAX_WORK multiply-adds (the spiral preset) run the tiny-layer
    loops: the same sums as the GEMM path in another order, so equal within rounding."""
    from fastnn import _train_step
    make = lambda: Sequential([Dense(10, "sigmoid"), Dense(7, "tanh"), Dense(3)], loss=loss(),  # noqa: E731
                              optimizer=optimizer(), input_shape=(2,), seed=4)
    fused, layered = make(), make()
    layered._fused_steps = None
    x = rng.uniform(-1, 1, (30, 2)).astype(np.float32)
    y = rng.integers(0, 3, 30)
    for _ in range(5):
        fused_loss, layered_loss = fused.train_step(x, y), layered.train_step(x, y)
        assert fused_loss == pytest.approx(layered_loss, rel=1e-5)
        assert fused.last_correct == layered.last_correct
    assert fused._fused_steps[30].tiny and 30 * (20 + 70 + 21) <= _train_step.TINY_STEP_MAX_WORK
    np.testing.assert_allclose(fused.params, layered.params, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fused.grads, layered.grads, rtol=1e-4, atol=1e-6)
