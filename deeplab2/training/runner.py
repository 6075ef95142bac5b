"""The modes of `trainer.py`: train, eval, train_and_eval, continuous_eval."""
import sys

import tensorflow as tf

from deeplab2.training.experiment import Experiment
from deeplab2.training.strategy import create_strategy
from deeplab2.training.train_loop import NonFiniteLossError


class MissingDataError(Exception):
    """A configured file pattern or checkpoint that does not exist."""


def check_files(pattern, what: str) -> None:
    if not pattern:
        raise MissingDataError(f"{what} is not set in the Gin config.")
    if not tf.io.gfile.glob(pattern):
        raise MissingDataError(f"{what} {pattern!r} matches no file.")


def _train_loop(experiment: Experiment):
    strategy = create_strategy(experiment.tpu)
    print(f"Training with {type(strategy).__name__} on "
          f"{strategy.num_replicas_in_sync} replica(s).", flush=True)
    return experiment.make_train_loop(strategy)


def train(experiment: Experiment) -> dict:
    check_files(experiment.train_file_pattern, "Experiment.train_file_pattern")
    return _train_loop(experiment).train()


def evaluate_latest(experiment: Experiment) -> dict:
    check_files(experiment.eval_file_pattern, "Experiment.eval_file_pattern")
    latest = tf.train.latest_checkpoint(experiment.model_dir)
    if not latest:
        raise MissingDataError(f"No checkpoint to evaluate in {experiment.model_dir}.")
    return experiment.evaluate(latest)


def train_and_evaluate(experiment: Experiment) -> dict:
    check_files(experiment.train_file_pattern, "Experiment.train_file_pattern")
    check_files(experiment.eval_file_pattern, "Experiment.eval_file_pattern")
    loop = _train_loop(experiment)
    num_steps = experiment.loop_options.num_steps
    every = experiment.eval_every or num_steps
    result = {}
    for until in list(range(every, num_steps, every)) + [num_steps]:
        if int(loop.step.numpy()) < until:
            loop.train(until_step=until)
        result = experiment.evaluate(tf.train.latest_checkpoint(experiment.model_dir))
    return result


def continuous_evaluate(experiment: Experiment) -> dict:
    """Evaluates each new checkpoint until the one of the final step."""
    check_files(experiment.eval_file_pattern, "Experiment.eval_file_pattern")
    result = {}
    for path in tf.train.checkpoints_iterator(experiment.model_dir,
                                              timeout=experiment.eval_timeout):
        result = experiment.evaluate(path)
        if result["step"] >= experiment.loop_options.num_steps:
            break
    return result


MODES = {"train": train, "eval": evaluate_latest, "train_and_eval": train_and_evaluate,
         "continuous_eval": continuous_evaluate}


def run(mode: str, model_dir: str, tpu=None) -> dict:
    """Runs `mode` with the experiment bound in Gin; exits with a clear message
    on missing data or a non-finite loss."""
    experiment = Experiment(model_dir, **({"tpu": tpu} if tpu else {}))
    experiment.setup_runtime()
    experiment.write_config()
    try:
        return MODES[mode](experiment)
    except (MissingDataError, NonFiniteLossError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    finally:
        experiment.write_config(operative=True)
