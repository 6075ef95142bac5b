"""trainer.py end to end in subprocesses: clear failures, resume after SIGKILL."""
import os
import signal
import subprocess
import time

import numpy as np
import tensorflow as tf

from _trainer_helpers import quiet_env, run_trainer, trainer_command, PROJECT_ROOT


def test_typo_in_a_binding_fails_with_a_clear_message(tmp_path, tiny_records):
    result = run_trainer(tmp_path / "run", tiny_records, "build_modle.backbone = 'resnet50'")
    assert result.returncode == 2
    assert "Invalid Gin configuration" in result.stderr and "build_modle" in result.stderr


def test_missing_config_file_fails_with_a_clear_message(tmp_path, tiny_records):
    command = trainer_command(tmp_path / "run", tiny_records)
    command.append("--gin_config=/nonexistent/file.gin")
    result = subprocess.run(command, capture_output=True, text=True, env=quiet_env(),
                            cwd=PROJECT_ROOT, timeout=300)
    assert result.returncode == 2
    assert "Cannot read Gin config file '/nonexistent/file.gin'" in result.stderr


def test_missing_tfrecords_fail_before_training(tmp_path, tiny_records):
    result = run_trainer(tmp_path / "run", tiny_records,
                         "Experiment.train_file_pattern = '/nonexistent/train-*.tfrecord'")
    assert result.returncode == 1
    assert ("Experiment.train_file_pattern '/nonexistent/train-*.tfrecord' matches no file"
            in result.stderr)


def test_nan_learning_rate_stops_with_the_step_and_saves_nothing(tmp_path, tiny_records):
    model_dir = tmp_path / "run"
    result = run_trainer(model_dir, tiny_records, "build_optimizer.learning_rate = 1e30",
                         "Experiment.num_steps = 4", "Experiment.checkpoint_every = 1")
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Loss became NaN or Inf at step" in result.stderr
    # Whatever was saved before the failure holds only finite weights.
    latest = tf.train.latest_checkpoint(str(model_dir))
    if latest:
        reader = tf.train.load_checkpoint(latest)
        for name in reader.get_variable_to_shape_map():
            value = reader.get_tensor(name)
            if isinstance(value, np.ndarray) and value.dtype.kind == "f":
                assert np.isfinite(value).all(), name


def _variables(model_dir):
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(model_dir)))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if "model" in name or "step" in name}


def test_sigkill_then_restart_resumes_and_matches_an_uninterrupted_run(tmp_path,
                                                                      tiny_records):
    bindings = ("Experiment.deterministic = True", "Experiment.num_steps = 6",
                "Experiment.checkpoint_every = 2")
    reference = run_trainer(tmp_path / "reference", tiny_records, *bindings)
    assert reference.returncode == 0, reference.stderr[-3000:]

    model_dir = tmp_path / "killed"
    process = subprocess.Popen(trainer_command(model_dir, tiny_records, *bindings),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=quiet_env(), cwd=PROJECT_ROOT)
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline and process.poll() is None:
        if tf.train.latest_checkpoint(str(model_dir)):
            break
        time.sleep(0.2)
    assert process.poll() is None, "the run ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = tf.train.load_checkpoint(
        tf.train.latest_checkpoint(str(model_dir))).get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE")
    assert 0 < killed_at < 6

    resumed = run_trainer(model_dir, tiny_records, *bindings)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"at step {killed_at}" in resumed.stdout
    expected, actual = _variables(tmp_path / "reference"), _variables(model_dir)
    assert actual.keys() == expected.keys() and actual["step/.ATTRIBUTES/VARIABLE_VALUE"] == 6
    for name in expected:
        np.testing.assert_array_equal(actual[name], expected[name], err_msg=name)


def test_train_and_eval_writes_metrics_pictures_and_summaries(tmp_path, tiny_records):
    model_dir = tmp_path / "run"
    result = run_trainer(model_dir, tiny_records, "Experiment.num_steps = 2",
                         "Experiment.image_summary_every = 2",
                         "Experiment.num_eval_pictures = 1", mode="train_and_eval")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "PQ" in result.stdout and "mIoU" in result.stdout
    import json
    metrics = json.loads((model_dir / "eval" / "metrics-2.json").read_text())
    assert metrics["step"] == 2 and metrics["num_images"] == 2
    assert 0.0 <= metrics["All"]["pq"] <= 1.0
    assert len(list((model_dir / "eval" / "pictures-2").glob("*.png"))) == 1
    # config.gin holds every binding given, operative_config.gin what the run used.
    given = (model_dir / "config.gin").read_text()
    assert "Experiment.num_steps = 2" in given and "build_model." in given
    used = (model_dir / "operative_config.gin").read_text()
    assert "build_model.backbone = " in used and "build_optimizer.learning_rate" in used
    tags = set()
    for path in (model_dir / "train").glob("events.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            tags.update(value.tag for value in event.summary.value)
    assert {"predictions", "losses/total_loss", "learning_rate"} <= tags


def test_xla_forward_backward_with_bfloat16_trains(tmp_path, tiny_records):
    model_dir = tmp_path / "run"
    result = run_trainer(model_dir, tiny_records, "Experiment.num_steps = 2",
                         "Experiment.xla = True", "Experiment.mixed_precision = 'bfloat16'")
    assert result.returncode == 0, result.stderr[-3000:]
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(model_dir)))
    assert reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == 2
