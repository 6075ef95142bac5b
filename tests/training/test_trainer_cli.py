"""trainer.py end to end in subprocesses: clear failures, resume after SIGKILL."""
import json
import os
import re
import signal
import subprocess
import time

import numpy as np
import pytest
import tensorflow as tf

from _trainer_helpers import (PROJECT_ROOT, TINY_GIN, TOY_GIN, quiet_env, run_trainer,
                              trainer_command)


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
                         "Trainer.train_file_pattern = '/nonexistent/train-*.tfrecord'")
    assert result.returncode == 1
    assert ("Trainer.train_file_pattern '/nonexistent/train-*.tfrecord' matches no file"
            in result.stderr)


def test_a_model_dir_that_is_a_file_fails_with_a_clear_message(tmp_path, tiny_records):
    (tmp_path / "run").write_text("not a folder")
    result = run_trainer(tmp_path / "run", tiny_records)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: --model_dir {tmp_path}/run is a file; expected a folder")
    assert (tmp_path / "run").read_text() == "not a folder"


def test_an_unknown_dataset_fails_with_one_line(tmp_path, tiny_records):
    result = run_trainer(tmp_path / "run", tiny_records, "build_model.dataset = 'nope'")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "error: Unknown dataset 'nope'; known datasets: ade20k, cityscapes, coco, "
        "mapillary_vistas, mapillary_vistas_v2, synthetic, or the path of a .json dataset "
        "descriptor (README: Your own dataset). (in build_model)")


def _variables(model_dir):
    """Every saved variable: the model's, the optimizer's (which tracks the
    trainable weights), the step and the random-number states."""
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(model_dir)))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name != "_CHECKPOINTABLE_OBJECT_GRAPH"}


@pytest.mark.slow
def test_sigkill_then_restart_resumes_and_matches_an_uninterrupted_run(tmp_path,
                                                                      tiny_records):
    # The toy family: its steps take milliseconds, so the run is long in steps
    # (and checkpoints) for the kill to land between the first checkpoint and
    # the end.
    bindings = ("Trainer.deterministic = True", "Trainer.num_steps = 200",
                "Trainer.checkpoint_every = 2", "Trainer.summary_every = 100")
    reference = run_trainer(tmp_path / "reference", tiny_records, *bindings, gin=TOY_GIN)
    assert reference.returncode == 0, reference.stderr[-3000:]

    model_dir = tmp_path / "killed"
    process = subprocess.Popen(trainer_command(model_dir, tiny_records, *bindings, gin=TOY_GIN),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=quiet_env(), cwd=PROJECT_ROOT)
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline and process.poll() is None:
        if tf.train.latest_checkpoint(str(model_dir)):
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = tf.train.load_checkpoint(
        tf.train.latest_checkpoint(str(model_dir))).get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE")
    assert 0 < killed_at < 200

    resumed = run_trainer(model_dir, tiny_records, *bindings, gin=TOY_GIN)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"at step {killed_at}" in resumed.stdout
    expected, actual = _variables(tmp_path / "reference"), _variables(model_dir)
    assert actual.keys() == expected.keys() and actual["step/.ATTRIBUTES/VARIABLE_VALUE"] == 200
    for name in expected:
        np.testing.assert_array_equal(actual[name], expected[name], err_msg=name)


def _bindings(gin_text):
    """{configurable.parameter: value text} of the bindings of a Gin config text."""
    bindings, name = {}, None
    for line in gin_text.splitlines():
        match = re.match(r"^([A-Za-z_][\w.]*)\s*=\s*(.*)$", line)
        if match and "." in match.group(1):
            name = match.group(1)
            bindings[name] = match.group(2)
        elif name and line.startswith(" "):
            bindings[name] += line.strip()
    return bindings


# Bindings beyond tiny.gin, so that every configurable a run calls is bound.
EXTRA_BINDINGS = ("Trainer.num_steps = 2", "Trainer.image_summary_every = 2",
                  "Evaluator.num_pictures = 1", "Evaluator.batch_size = 2",
                  "build_predictor.flip = False", "PanopticDeepLabTargets.sigma = 6",
                  "PanopticDeepLabLoss.center_weight = 100.0",
                  "TrainingInput.shuffle_memory_mb = 64", "build_optimizer.power = 0.8",
                  "build_model.postprocess = {'nms_kernel': 5}")


@pytest.mark.slow
def test_train_and_eval_writes_metrics_pictures_summaries_and_the_model(tmp_path,
                                                                       tiny_records):
    model_dir = tmp_path / "run"
    result = run_trainer(model_dir, tiny_records, *EXTRA_BINDINGS, mode="train_and_eval")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "PQ" in result.stdout and "mIoU" in result.stdout
    # Quiet by default: no TensorFlow C++ or absl INFO lines.
    assert not re.search(r"^(I\d{4} |INFO)", result.stderr, re.MULTILINE), result.stderr
    metrics = json.loads((model_dir / "eval" / "metrics-2.json").read_text())
    assert metrics["step"] == 2 and metrics["num_images"] == 2
    assert set(metrics["per_class"]) == {"0", "1", "2", "3", "4", "5"}
    assert len(list((model_dir / "eval" / "pictures-2").glob("*.png"))) == 1
    # config.gin holds every binding given; every one of them was used by the
    # run (operative_config.gin): no binding is dead.
    given = _bindings((model_dir / "config.gin").read_text())
    used = _bindings((model_dir / "operative_config.gin").read_text())
    assert given["Trainer.num_steps"] == "2" and "build_model.backbone" in given
    assert {name: used.get(name) for name in given} == given
    tags = set()
    for path in (model_dir / "train").glob("events.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            tags.update(value.tag for value in event.summary.value)
    assert {"predictions", "losses/total_loss", "learning_rate"} <= tags
    # The model directory is usable without Gin.
    import deeplab2

    model = deeplab2.load_model(str(model_dir))
    assert model.model_config.postprocess["nms_kernel"] == 5
    assert model.model_config.architecture["instance_head_channels"] == 8


def test_a_model_directory_of_another_model_is_refused(tmp_path, tiny_records):
    from deeplab2.model import build_model, model_dir as model_dir_lib

    model_dir = tmp_path / "run"
    other = build_model(dataset="synthetic", backbone="mobilenet_v3_small", crop_size=(65, 97))
    model_dir_lib.write_model_config(str(model_dir), other.model_config)
    result = run_trainer(model_dir, tiny_records, "Trainer.num_steps = 1")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith(f"error: {model_dir}/model_config.json describes another "
                                "model than the Gin config: architecture.")
    assert "instance_head_channels" in lines[-1]


def _tiny_model(gin=TINY_GIN, **options):
    from deeplab2.model import build_model
    from deeplab2.training import config

    return build_model(**dict(config.model_options(str(gin)), **options))


def test_training_resumes_from_a_model_directory_without_optimizer_state(tmp_path,
                                                                          tiny_records):
    # An imported (or exported) model directory: a checkpoint of the model and
    # its step only. Training it fine-tunes from those weights.
    from deeplab2.model.model_dir import write_model_dir

    # The toy family: resuming is the trainer's, whatever the model.
    model = _tiny_model(TOY_GIN)
    kernel = model.classifier.kernel
    kernel.assign(tf.fill(kernel.shape, 0.25))
    model_dir = tmp_path / "imported"
    write_model_dir(model, str(model_dir))
    result = run_trainer(model_dir, tiny_records, "Trainer.num_steps = 2", gin=TOY_GIN)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Resumed at step 0: " in result.stdout
    assert "no optimizer state, starting it fresh" in result.stdout
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(model_dir)))
    assert reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == 2
    from deeplab2.model.checkpoints import checkpoint_variables, stored_keys

    key = next(k for k, v in checkpoint_variables(model, "model").items() if v is kernel)
    trained = reader.get_tensor(stored_keys(reader)[key])
    # Two Adam steps of lr 1e-3 move a weight by at most ~2e-3.
    np.testing.assert_allclose(trained, 0.25, atol=3e-3)


def test_an_init_checkpoint_of_another_architecture_stops_the_run(tmp_path, tiny_records):
    from deeplab2.model.model_dir import write_model_dir

    other = tmp_path / "other"
    write_model_dir(_tiny_model(backbone="mobilenet_v3_large"), str(other))
    model_dir = tmp_path / "run"
    result = run_trainer(model_dir, tiny_records, "Trainer.num_steps = 1",
                         f"Trainer.init_checkpoint = '{other}'")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: init checkpoint does not cover the backbone: ")
    assert "not loaded" in last
    assert tf.train.latest_checkpoint(str(model_dir)) is None


@pytest.mark.slow
def test_compiled_bfloat16_training_learns(tmp_path, tiny_records):
    """The XLA-compiled step in bfloat16 mixed precision runs and lowers the loss
    of the batch it trains on (the 2 val images, not augmented: the same batch
    every step). XLA's backend runs at optimization level 0: the same
    computation, compiled in half the time (about 50 against 100 s here)."""
    model_dir = tmp_path / "run"
    result = run_trainer(model_dir, tiny_records, "Trainer.num_steps = 20",
                         f"Trainer.train_file_pattern = '{tiny_records}/val-*.tfrecord'",
                         "TrainingInput.min_scale = 1.0", "TrainingInput.max_scale = 1.0",
                         "TrainingInput.flip_prob = 0.0",
                         "Trainer.checkpoint_every = 20", "Trainer.summary_every = 1",
                         "Trainer.steps_per_loop = 5", "build_optimizer.learning_rate = 3e-3",
                         "Trainer.jit_compile = True", "Trainer.mixed_precision = 'bfloat16'",
                         env=quiet_env(XLA_FLAGS="--xla_backend_optimization_level=0"))
    assert result.returncode == 0, result.stderr[-3000:]
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(model_dir)))
    assert reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == 20
    losses = []
    for path in sorted((model_dir / "train").glob("events.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            losses += [float(tf.make_ndarray(v.tensor)) for v in event.summary.value
                       if v.tag == "losses/total_loss"]
    assert len(losses) == 4 and losses[-1] < 0.7 * losses[0], losses
