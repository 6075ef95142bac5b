"""Running trainer.py in a subprocess on the tiny config."""
import pathlib
import subprocess
import sys

import tensorflow as tf

from script_runs import PROJECT_ROOT, quiet_env

TINY_GIN = pathlib.Path(__file__).with_name("tiny.gin")
TOY_GIN = pathlib.Path(__file__).with_name("toy.gin")


def data_bindings(records: pathlib.Path):
    return [f"Trainer.train_file_pattern = '{records}/train-*.tfrecord'",
            f"Evaluator.file_pattern = '{records}/val-*.tfrecord'"]


def trainer_command(model_dir, records, *bindings, mode="train", gin=TINY_GIN):
    command = [sys.executable, str(PROJECT_ROOT / "scripts" / "trainer.py"),
               f"--gin_config={gin}", f"--model_dir={model_dir}", f"--mode={mode}"]
    for binding in data_bindings(records) + list(bindings):
        command.append(f"--gin_bindings={binding}")
    return command


def run_trainer(model_dir, records, *bindings, mode="train", env=None, timeout=600,
                gin=TINY_GIN):
    return subprocess.run(trainer_command(model_dir, records, *bindings, mode=mode, gin=gin),
                          capture_output=True, text=True, timeout=timeout,
                          env=env or quiet_env(), cwd=PROJECT_ROOT)


def event_scalars(event_dir, tag):
    """The values of scalar summary `tag` in a folder's event files, by step."""
    values = {}
    for path in sorted(pathlib.Path(event_dir).glob("events.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.tag == tag:
                    values[event.step] = float(tf.make_ndarray(value.tensor))
    return [values[step] for step in sorted(values)]


def overfit_coco(tmp_path, shared_data, gin):
    """Converts the real COCO sample, runs trainer.py --mode=train_and_eval on
    it with the `gin` config (an overfit_coco*.gin), and returns its total
    loss curve and the metrics of its final evaluation."""
    import json

    import pytest

    from deeplab2.data.converters.coco import convert_coco

    root = shared_data / "coco_panoptic"
    if not root.is_dir():
        pytest.skip(f"the COCO panoptic sample is not at {root}")
    convert_coco(str(root / "panoptic_examples.json"), str(root / "panoptic"),
                 str(root / "images"), str(tmp_path / "data"), split="val", num_workers=1)
    pattern = f"{tmp_path}/data/val-*.tfrecord"
    model_dir = tmp_path / "run"
    command = [sys.executable, str(PROJECT_ROOT / "scripts" / "trainer.py"),
               f"--gin_config={gin}", f"--model_dir={model_dir}", "--mode=train_and_eval",
               f"--gin_bindings=Trainer.train_file_pattern = '{pattern}'",
               f"--gin_bindings=Evaluator.file_pattern = '{pattern}'"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1800,
                            env=quiet_env(), cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = sorted((model_dir / "eval").glob("metrics-*.json"),
                     key=lambda path: int(path.stem.split("-")[1]))
    return (event_scalars(model_dir / "train", "losses/total_loss"),
            json.loads(metrics[-1].read_text()))
