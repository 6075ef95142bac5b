"""Training under tf.distribute: MirroredStrategy equals one device; multi-worker runs."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import tensorflow as tf

from _trainer_helpers import PROJECT_ROOT, quiet_env, trainer_command


def test_one_mirrored_step_on_two_cpus_equals_one_default_step(tmp_path, tiny_records):
    script = os.path.join(os.path.dirname(__file__), "_mirrored_step.py")
    result = subprocess.run([sys.executable, script, str(tiny_records), str(tmp_path)],
                            capture_output=True, text=True, timeout=600, env=quiet_env(),
                            cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["same_names"] and report["num_weights"] > 100
    for name, value in report["single"].items():
        np.testing.assert_allclose(report["mirrored"][name], value, rtol=1e-5, err_msg=name)
    assert report["max_relative_weight_difference"] < 1e-5, report["worst"]
    # Scale-free: the updates agree to 0.1% of the largest one. A fresh model's
    # gradients reach ~500 (center loss weight 200) and sum thousands of terms
    # in another order on two replicas, so float32 round-off is ~1e-4 of them.
    assert report["update_difference"] < 1e-3 * report["largest_update"]


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_train_and_the_chief_writes_the_checkpoint(tmp_path, tiny_records):
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    model_dir = tmp_path / "run"
    processes, logs = [], []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = quiet_env()
        env["TF_CONFIG"] = json.dumps(tf_config)
        command = trainer_command(model_dir, tiny_records, "Experiment.num_steps = 2",
                                  "Experiment.checkpoint_every = 2")
        # Files, not pipes: a worker blocked on a full pipe would stall the other
        # one at the next collective.
        log = open(tmp_path / f"worker{index}.log", "w+")
        logs.append(log)
        processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                          env=env, cwd=PROJECT_ROOT))
    outputs = []
    for process, log in zip(processes, logs):
        process.wait(timeout=600)
        log.seek(0)
        outputs.append(log.read())
        log.close()
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-3000:]
    # MultiWorkerMirroredStrategy is CollectiveAllReduceStrategy by its class name.
    assert all("CollectiveAllReduceStrategy on 2 replica(s)" in o for o in outputs)
    latest = tf.train.latest_checkpoint(str(model_dir))
    assert latest and latest.endswith("ckpt-2")
    step = tf.train.load_checkpoint(latest).get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE")
    assert step == 2
    # The second worker wrote only to its own temporary directory, which is removed.
    assert not [p for p in os.listdir(model_dir) if p.startswith(".worker-")]
