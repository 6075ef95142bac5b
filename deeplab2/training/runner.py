"""The modes of `trainer.py`: train, eval, train_and_eval, continuous_eval."""
import sys

import tensorflow as tf

from deeplab2.training.experiment import Experiment
from deeplab2.training.strategy import create_strategy
from deeplab2.training.train_loop import NonFiniteLossError


class MissingDataError(Exception):
    """A configured file pattern that matches no file."""


def check_files(pattern, what: str) -> None:
    if not pattern:
        raise MissingDataError(f"{what} is not set in the Gin config.")
    if not tf.io.gfile.glob(pattern):
        raise MissingDataError(f"{what} {pattern!r} matches no file.")


def train(experiment: Experiment) -> dict:
    check_files(experiment.train_file_pattern, "Experiment.train_file_pattern")
    strategy = create_strategy(experiment.tpu)
    print(f"Training with {type(strategy).__name__} on "
          f"{strategy.num_replicas_in_sync} replica(s).", flush=True)
    loop = experiment.make_train_loop(strategy)
    return loop.train()


def run(mode: str, model_dir: str, tpu=None) -> None:
    """Runs `mode` with the experiment bound in Gin; exits with a clear message
    on missing data or a non-finite loss."""
    experiment = Experiment(model_dir, **({"tpu": tpu} if tpu else {}))
    experiment.setup_runtime()
    experiment.write_operative_config()
    try:
        if mode == "train":
            train(experiment)
        else:
            raise NotImplementedError(f"mode {mode!r} comes with the evaluation stage")
    except (MissingDataError, NonFiniteLossError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
