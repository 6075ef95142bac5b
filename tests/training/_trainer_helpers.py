"""Running trainer.py in a subprocess on the tiny config."""
import os
import pathlib
import subprocess
import sys

import tensorflow as tf

TINY_GIN = pathlib.Path(__file__).with_name("tiny.gin")
TOY_GIN = pathlib.Path(__file__).with_name("toy.gin")
PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[2]
TESTS_DIR = PROJECT_ROOT / "tests"


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


def quiet_env(**extra):
    # tests/ on the path: Gin configs import test modules (toy.gin: toy_family).
    path = os.pathsep.join(p for p in (str(TESTS_DIR), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=path, **extra)
    env.pop("TF_CONFIG", None)
    return env


def event_scalars(event_dir, tag):
    """The values of scalar summary `tag` in a folder's event files, by step."""
    values = {}
    for path in sorted(pathlib.Path(event_dir).glob("events.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.tag == tag:
                    values[event.step] = float(tf.make_ndarray(value.tensor))
    return [values[step] for step in sorted(values)]
