"""Training and evaluation under tf.distribute: MirroredStrategy and XLA-compiled
steps equal the default strategy; multi-worker runs where only the chief writes."""
import json
import os
import socket
import subprocess

import numpy as np
import pytest
import tensorflow as tf

from _trainer_helpers import PROJECT_ROOT, TOY_GIN, quiet_env, run_trainer, trainer_command
from script_runs import script_report


@pytest.fixture(scope="module")
def checks(tmp_path_factory, tiny_records):
    """The report of _distributed_checks.py (one process on 2 logical CPUs)."""
    script = os.path.join(os.path.dirname(__file__), "_distributed_checks.py")
    return script_report(script, tiny_records, tmp_path_factory.mktemp("distributed"))


def _assert_same_step(report, rtol=1e-5, update_tolerance=1e-3, min_weights=100):
    assert report["same_names"] and report["num_weights"] >= min_weights
    for name, value in report["losses"].items():
        np.testing.assert_allclose(report["other_losses"][name], value, rtol=rtol,
                                   err_msg=name)
    assert report["max_relative_weight_difference"] < rtol, report["worst"]
    # Scale-free: the updates agree to a fraction of the largest one. A fresh
    # model's gradients reach ~500 (center loss weight 200) and sum thousands of
    # terms in another order, so float32 round-off is ~1e-4 of them.
    assert report["update_difference"] < update_tolerance * report["largest_update"]


@pytest.mark.slow
def test_one_mirrored_step_on_two_cpus_equals_one_default_step(checks):
    _assert_same_step(checks["mirrored_step"])


@pytest.mark.slow
@pytest.mark.parametrize("case", ["default", "mirrored", "float16"])
def test_compiled_step_equals_the_uncompiled_step(checks, case):
    """The XLA-compiled replica step (forward, losses, gradients, loss scaling,
    optimizer update under one replica; the forward and backward pass per
    replica under MirroredStrategy) gives the uncompiled step's losses and
    updated weights within 1e-4 relative: a Panoptic-DeepLab under the default
    strategy; the toy family's kernel and bias under MirroredStrategy (against
    the default strategy: it has no batch norm) and in float16."""
    rtol = 1e-2 if case == "float16" else 1e-4
    _assert_same_step(checks["compiled"][case], rtol=rtol,
                      update_tolerance=1e-2 if case == "float16" else 1e-3,
                      min_weights=100 if case == "default" else 2)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["mirrored", "mirrored_compiled"])
def test_an_accumulated_mirrored_step_equals_one_step_on_the_whole_batch(checks, case):
    """Gradient accumulation (2 batches of 2) on 2 replicas, uncompiled and
    with the micro-step compiled per replica: the toy family's losses and
    weights of one step on the same 4 images."""
    _assert_same_step(checks["accumulated"][case], min_weights=2)


@pytest.mark.slow
def test_the_compiled_training_step_has_no_float64_or_string_tensor(checks):
    dtypes = set(checks["compiled"]["dtypes"])
    # The scan sees the step: its float32 math and its variables.
    assert {"float32", "resource"} <= dtypes
    assert not dtypes & {"float64", "string"}, dtypes


@pytest.mark.slow
def test_mirrored_evaluation_equals_single_device_evaluation(checks):
    single, mirrored = checks["mirrored_eval"]["default"], checks["mirrored_eval"]["mirrored"]
    assert single["num_images"] == mirrored["num_images"] == 2
    assert single["miou"] > 0  # predictions of some classes hit their pixels
    assert mirrored == single


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_two_workers_train_and_evaluate_and_only_the_chief_writes(tmp_path, tiny_records):
    # The toy family (tests/toy_family.py): the subject is the cluster's
    # mechanics, which no model detail affects.
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    model_dir = tmp_path / "run"
    bindings = ("Trainer.num_steps = 2", "Trainer.checkpoint_every = 2",
                "Evaluator.num_pictures = 1", "Evaluator.batch_size = 2")
    # What a killed run of worker 1 left: the next run removes it and says so.
    stale = model_dir / ".worker-1-tmp"
    stale.mkdir(parents=True)
    (stale / "ckpt-9.index").write_bytes(b"half")
    processes, logs = [], []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = quiet_env()
        env["TF_CONFIG"] = json.dumps(tf_config)
        command = trainer_command(model_dir, tiny_records, *bindings, mode="train_and_eval",
                                  gin=TOY_GIN)
        # Files, not pipes: a worker blocked on a full pipe would stall the other
        # one at the next collective.
        log = open(tmp_path / f"worker{index}.log", "w+")
        logs.append(log)
        processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                          env=env, cwd=PROJECT_ROOT))
    outputs = []
    for process, log in zip(processes, logs):
        process.wait(timeout=900)
        log.seek(0)
        outputs.append(log.read())
        log.close()
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-3000:]
    assert f"Removed {stale}, left by an interrupted run of this worker." in outputs[1]
    # MultiWorkerMirroredStrategy is CollectiveAllReduceStrategy by its class name.
    assert all("CollectiveAllReduceStrategy on 2 replica(s)" in o for o in outputs)
    latest = tf.train.latest_checkpoint(str(model_dir))
    assert latest and latest.endswith("ckpt-2")
    step = tf.train.load_checkpoint(latest).get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE")
    assert step == 2
    # Only the chief wrote: its files, one metrics file, no worker folder left.
    assert sorted(p.name for p in model_dir.iterdir()) == [
        "checkpoint", "ckpt-2.data-00000-of-00001", "ckpt-2.index", "config.gin", "eval",
        "model_config.json", "operative_config.gin", "train"]
    assert sorted(p.name for p in (model_dir / "eval").iterdir() if p.is_file())[0].startswith(
        "events.") and (model_dir / "eval" / "metrics-2.json").exists()
    assert len(list((model_dir / "eval" / "pictures-2").iterdir())) == 1
    # The two workers evaluated one image each; the metrics equal a
    # single-device evaluation of the same checkpoint.
    distributed = json.loads((model_dir / "eval" / "metrics-2.json").read_text())
    assert distributed["num_images"] == 2
    single = run_trainer(model_dir, tiny_records, *bindings, mode="eval", gin=TOY_GIN)
    assert single.returncode == 0, single.stderr[-3000:]
    reference = json.loads((model_dir / "eval" / "metrics-2.json").read_text())
    assert reference == distributed
