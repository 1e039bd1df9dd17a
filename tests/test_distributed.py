"""fastnn.distributed: each MPI test runs `mpiexec -n K python tests/distributed_child.py ...` as a
subprocess with a timeout (a hang fails the test instead of freezing the run), and compares what
the ranks wrote with numpy references computed here. Skipped, with the reason, when mpi4py or an
mpiexec is missing (pip install ".[mpi]" brings both: the mpich wheel puts mpiexec in the venv's
bin/)."""
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "distributed_child.py")
TIMEOUT = 60  # seconds for a whole job (a few ranks importing numpy on a shared 2-core machine)
# An MPI launcher's variables in the pytest process would make a plain `python` child look like
# a rank of a bigger job (and mpiexec children inherit them): never pass them on.
LAUNCHER_PREFIXES = ("PMI_", "OMPI_", "PMIX_", "MPI_LOCAL", "HYDRA_")


def mpiexec():
    """The mpiexec next to this Python (the mpich wheel's), else the one on PATH, else skip."""
    if importlib.util.find_spec("mpi4py") is None:
        pytest.skip("mpi4py is not installed (pip install '.[mpi]')")
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    found = beside if os.access(beside, os.X_OK) else shutil.which("mpiexec")
    if found is None:
        pytest.skip("no mpiexec next to this Python or on PATH (pip install '.[mpi]' brings MPICH's)")
    return found


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(LAUNCHER_PREFIXES)}
    env["FASTNN_NUM_THREADS"] = "1"  # ranks share this machine's cores
    return {**env, **extra}


def run(ranks, scenario, out, *args, env=None, expect_ok=True):
    """Run a scenario on `ranks` ranks (None: a plain python process); (result, seconds)."""
    command = [sys.executable, CHILD, scenario, str(out), *map(str, args)]
    if ranks is not None:
        command = [mpiexec(), "-n", str(ranks)] + command
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, env=env or clean_env())
    seconds = time.perf_counter() - start
    if expect_ok:
        assert result.returncode == 0, result.stderr
    return result, seconds


def ranks_output(out, world):
    return [dict(np.load(out / f"rank{r}.npz")) for r in range(world)]


def tree_sum(parts):
    """Pairwise in rank order, as MPICH's Allreduce adds on one machine for 2 and 4 ranks:
    (g0 + g1) + (g2 + g3). Checked against a different order below, so it matters."""
    while len(parts) > 1:
        parts = [parts[i] + parts[i + 1] for i in range(0, len(parts), 2)]
    return parts[0]


def test_import_fastnn_does_not_import_mpi4py():
    code = ("import sys, fastnn, fastnn.distributed; "
            "assert 'mpi4py' not in sys.modules, 'mpi4py imported by import fastnn'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=TIMEOUT, env=clean_env())


def test_broadcast_makes_different_seeds_identical(tmp_path):
    run(2, "broadcast", tmp_path)
    rank0, rank1 = ranks_output(tmp_path, 2)
    assert not np.array_equal(rank0["before0"], rank1["before0"])  # seeds really differed
    for i in range(6):
        for got in (rank0, rank1):
            np.testing.assert_array_equal(got[f"after{i}"], rank0[f"before{i}"])
    assert int(rank1["after5"]) == 10  # Adam's step count t, a number, came from rank 0


@pytest.mark.parametrize("world, sizes, length", [(2, "32,7", 39760), (4, "16,16,16,3", 1001)])
def test_average_gradients_weights_each_rank_by_its_batch(tmp_path, world, sizes, length):
    run(world, "average", tmp_path, sizes, length)
    got = ranks_output(tmp_path, world)
    n = [int(s) for s in sizes.split(",")]
    total = sum(n)
    grads = [np.random.default_rng(r).standard_normal(length).astype(np.float32) for r in range(world)]
    exact = sum(g.astype(np.float64) * (k / total) for g, k in zip(grads, n))
    in_order = tree_sum([g * np.float32(k / total) for g, k in zip(grads, n)])
    for rank in got:
        np.testing.assert_allclose(rank["found"], exact, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(rank["found"], in_order)
        np.testing.assert_array_equal(rank["given"], rank["found"])
        np.testing.assert_array_equal(rank["totals"], [sum(0.5 + r for r in range(world)), total,
                                                       sum(3 * r for r in range(world))])
        assert rank["stop"] and rank["no_correct"]
    if world == 4:  # the order matters: a sequential sum differs in some element
        sequential = ((grads[0] * np.float32(n[0] / total) + grads[1] * np.float32(n[1] / total))
                      + grads[2] * np.float32(n[2] / total)) + grads[3] * np.float32(n[3] / total)
        assert not np.array_equal(sequential, in_order)


def test_checksum_mismatch_is_detected_on_every_rank(tmp_path):
    run(2, "checksum", tmp_path)
    for rank in ranks_output(tmp_path, 2):
        message = str(rank["message"])
        assert "parameters differ at epoch 1" in message and "rank 1" in message, message


def test_exception_on_one_rank_ends_the_job(tmp_path):
    result, seconds = run(2, "fail", tmp_path, "raise", expect_ok=False)
    assert result.returncode != 0 and seconds < 10, (result.returncode, seconds)
    lines = [line for line in result.stderr.splitlines() if line.startswith("fastnn: error:")]
    assert lines == ["fastnn: error: rank 1 of 2: ValueError: boom from rank 1"], result.stderr
    assert "passed the Allreduce" not in result.stdout


def test_sigkill_of_one_rank_ends_the_job(tmp_path):
    result, seconds = run(2, "fail", tmp_path, "kill", expect_ok=False)
    assert result.returncode != 0 and seconds < 10, (result.returncode, seconds)
    assert "passed the Allreduce" not in result.stdout


def test_random_search_is_refused_with_one_line(tmp_path):
    result, seconds = run(2, "random_search", tmp_path, expect_ok=False)
    assert result.returncode != 0 and seconds < 10
    lines = [line for line in result.stderr.splitlines() if line.startswith("fastnn: error:")]
    assert len(lines) == 1 and "not gradient based" in lines[0], result.stderr


def test_world_of_one_under_a_bigger_launch_is_refused(tmp_path):
    # Open MPI's mpirun starting an MPICH-linked mpi4py: each process is a world of 1.
    result, _ = run(None, "single", tmp_path, env=clean_env(OMPI_COMM_WORLD_SIZE="2", OMPI_COMM_WORLD_RANK="0"),
                    expect_ok=False)
    assert result.returncode != 0
    assert "different MPIs" in result.stderr and "OMPI_COMM_WORLD_SIZE=2" in result.stderr, result.stderr
    assert not (tmp_path / "rank0.npz").exists()


def test_world_of_one_without_a_launcher_works_and_checks_arguments(tmp_path):
    mpiexec()  # the skip reason when mpi4py is absent
    run(None, "single", tmp_path)
    (got,) = ranks_output(tmp_path, 1)
    assert int(got["world"]) == 1
    np.testing.assert_array_equal(got["grads"], np.arange(6, dtype=np.float32) * np.float32(0.5))
    errors = list(got["errors"])
    assert errors[0].startswith("TypeError") and "flat gradient array" in errors[0]
    assert errors[1].startswith("ValueError") and "batch_n=5" in errors[1]
    assert errors[2].startswith("ValueError") and "errors must be" in errors[2]


# -- training: fit(distributed=...) against single-process references ---------------------------
def reference_fit(name, samples, global_batch, world, epochs, combined=False, seed=3):
    """Weights of one process training like `world` ranks at per-rank batch global/world: each
    step, every rank's micro-batch (its slice of the epoch's permutation, as fit shards it)
    gives its mean-loss gradient, weighted by its size and summed in MPICH's order
    (tree_sum); then one update. combined=True: one train_step on all the micro-batches
    together (batch = global), the same samples."""
    from distributed_child import subset
    from fastnn import zoo
    model = zoo.get(name).build(seed=100)
    x, y = subset(name, samples)
    rng, order, b = np.random.default_rng(seed), np.arange(samples), global_batch // world
    losses = []
    for _ in range(epochs):
        rng.shuffle(order)
        shards = [order[samples * r // world:samples * (r + 1) // world] for r in range(world)]
        for start in range(0, len(shards[0]), b):
            parts = [shard[start:start + b] for shard in shards]
            total = sum(len(p) for p in parts)
            if combined:
                both = np.concatenate(parts)
                losses.append(model.train_step(x[both], y[both]))
                continue
            grads, loss_sums = [], []
            for p in parts:
                loss_sums.append(model.loss(model.forward(x[p], training=True), y[p]) * len(p))
                model.backward()
                grads.append(model.grads * np.float32(len(p) / total))
            model.grads[...] = tree_sum(grads)
            model.optimizer.step()
            losses.append(tree_sum(loss_sums) / total)
    return model.params, np.array(losses)


@pytest.mark.parametrize("name, world, samples, batch", [
    ("mlp", 2, 1010, 100),   # shards of 505: a last batch of 5 per rank
    ("mlp", 4, 1010, 100),   # shards of 252/253: last batches of 2 and 3, weighted by size
    ("lenet", 2, 200, 32),
    ("lenet", 4, 100, 32),
])
def test_fit_distributed_equals_one_process_averaging_the_micro_batches(tmp_path, threads, name, world,
                                                                       samples, batch):
    settings = {"model": name, "samples": samples, "batch": batch, "epochs": 1}
    run(world, "train", tmp_path, json.dumps(settings))
    got = ranks_output(tmp_path, world)
    threads(1)  # as the ranks (FASTNN_NUM_THREADS=1)
    expected, losses = reference_fit(name, samples, batch, world, epochs=1)
    for rank in got:
        assert int(rank["threads"]) == 1
        np.testing.assert_array_equal(rank["params"], expected)
        np.testing.assert_allclose(rank["step_loss"], losses, rtol=1e-12)
    # One process at the global batch on the same samples: equal to float32 rounding, within
    # 1e-6 absolute (measured: 3e-8 for mlp at K=4 and lenet at K=2, while the weights moved by
    # 3e-2 to 8e-2 in the epoch: the summation order is the only difference).
    combined, _ = reference_fit(name, samples, batch, world, epochs=1, combined=True)
    np.testing.assert_allclose(got[0]["params"], combined, rtol=0, atol=1e-6)
    assert not np.allclose(got[0]["params"], zoo_initial(name), atol=1e-3)  # it did train


def zoo_initial(name):
    from fastnn import zoo
    return zoo.get(name).build(seed=100).params


@pytest.fixture(scope="module")
def stream_file(tmp_path_factory):
    """Two shuffled epochs of the bundled MNIST subset (3,000 records)."""
    from fastnn import datasets
    from fastnn.data import mnist_files, write_shuffled
    files = mnist_files(datasets.SUBSET_DIR, datasets.SUBSET_PREFIX)
    path = tmp_path_factory.mktemp("stream") / "train.shuf"
    write_shuffled(files["train_images"], files["train_labels"], path, epochs=2, seed=5)
    return path


def test_kill_and_resume_mid_epoch_is_bit_identical(tmp_path, stream_file):
    base = {"model": "mlp", "stream": str(stream_file), "batch": 100, "epochs": 2}  # 30 steps/epoch
    (tmp_path / "whole").mkdir()
    run(2, "train", tmp_path / "whole", json.dumps(base))
    whole = ranks_output(tmp_path / "whole", 2)
    ckpt = tmp_path / "run.ckpt"
    (tmp_path / "killed").mkdir()
    killed, seconds = run(2, "train", tmp_path / "killed", json.dumps(
        {**base, "checkpoint": str(ckpt), "every": 7, "kill_rank": 1, "kill_step": 17}), expect_ok=False)
    assert killed.returncode != 0 and seconds < 30 and ckpt.exists()  # saved at step 14
    assert not (tmp_path / "killed" / "rank0.npz").exists()
    (tmp_path / "resumed").mkdir()
    run(2, "train", tmp_path / "resumed", json.dumps({**base, "resume": str(ckpt)}))
    for rank in ranks_output(tmp_path / "resumed", 2):
        np.testing.assert_array_equal(rank["params"], whole[0]["params"])
        np.testing.assert_array_equal(rank["step_loss"], whole[0]["step_loss"])
        np.testing.assert_array_equal(rank["epoch_loss"], whole[0]["epoch_loss"])
    (tmp_path / "four").mkdir()
    refused, _ = run(4, "train", tmp_path / "four", json.dumps({**base, "resume": str(ckpt)}), expect_ok=False)
    lines = [line for line in refused.stderr.splitlines() if line.startswith("fastnn: error:")]
    assert refused.returncode != 0 and len(lines) == 1, refused.stderr
    assert "taken by 2 process(es)" in lines[0] and "this run has 4" in lines[0]


def test_unequal_step_counts_are_refused_before_step_one(tmp_path):
    # 201 samples on 2 ranks at 50 each: shards of 100 and 101 records, 2 and 3 steps.
    settings = {"model": "mlp", "samples": 201, "batch": 100, "epochs": 1}
    result, seconds = run(2, "train", tmp_path, json.dumps(settings), expect_ok=False)
    lines = [line for line in result.stderr.splitlines() if line.startswith("fastnn: error:")]
    assert result.returncode != 0 and seconds < 10 and len(lines) == 1, result.stderr
    assert "different numbers of steps per epoch ([2, 3])" in lines[0]
    assert not (tmp_path / "rank0.npz").exists()


# -- the command line: mpiexec -n K fastnn train --distributed -----------------------------------
def cli(ranks, *args, **kw):
    """Popen of `mpiexec -n ranks python -m fastnn.cli train --distributed ARGS`."""
    command = [mpiexec(), "-n", str(ranks), sys.executable, "-m", "fastnn.cli", "train", "--distributed", *map(str, args)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=clean_env(FASTNN_DATA=""), **kw)


def finish(process):
    out, err = process.communicate(timeout=TIMEOUT)
    return process.returncode, out, err


def errors_of(err):
    return [line for line in err.splitlines() if line.startswith("fastnn: error:")]


def test_cli_rank_zero_alone_prints_and_writes(tmp_path):
    import fastnn
    code, out, err = finish(cli(2, "--model", "mlp", "--epochs", "1", "--json", "--out", tmp_path / "m.fastnn"))
    assert code == 0, err
    assert sum(line.startswith("Epoch 1:") for line in out.splitlines()) == 1, out
    summary = json.loads(out.splitlines()[-1])
    assert summary["ranks"] == 2 and summary["batch_size"] == 100 and summary["steps"] == 30  # 3,000 subset images at 100 a step
    assert len(summary["peak_rss_mb_per_rank"]) == 2
    assert fastnn.load(tmp_path / "m.fastnn").num_params == 39760


@pytest.mark.parametrize("args, words", [
    (["--batch-size", "99"], "multiple of 2"),
    (["--stream", "/nonexistent/train.shuf"], "/nonexistent/train.shuf"),
    (["--optimizer", "random-search", "--model", "twoclass"], "not gradient based"),
])
def test_cli_refusals_end_every_rank_with_one_line(tmp_path, args, words):
    start = time.perf_counter()
    code, out, err = finish(cli(2, "--model", "mlp", "--epochs", "1", *args))
    assert code == 2 and time.perf_counter() - start < 10, (code, err)
    lines = errors_of(err)
    assert len(lines) == 1 and words in lines[0], err


def test_cli_ctrl_c_saves_and_resume_continues_bit_identically(tmp_path, stream_file):
    common = ["--model", "mlp", "--stream", stream_file, "--epochs", "2", "--quiet"]
    code, _, err = finish(cli(2, *common, "--out", tmp_path / "whole.fastnn"))
    assert code == 0, err
    ckpt = tmp_path / "run.ckpt"
    process = cli(2, *common, "--checkpoint", ckpt, "--checkpoint-every", "5", "--threads", "1")
    deadline = time.time() + TIMEOUT
    while not ckpt.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)  # as Ctrl-C: mpiexec forwards it to every rank
    code, _, err = finish(process)
    assert code == 130, err
    assert sum("checkpoint saved to" in line for line in err.splitlines()) == 1, err
    code, _, err = finish(cli(2, "--resume", ckpt, "--quiet", "--out", tmp_path / "resumed.fastnn"))
    assert code == 0, err
    import fastnn
    whole, resumed = fastnn.load(tmp_path / "whole.fastnn"), fastnn.load(tmp_path / "resumed.fastnn")
    np.testing.assert_array_equal(resumed.params, whole.params)
