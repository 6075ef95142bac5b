"""The modes of `trainer.py`: train, eval, train_and_eval, continuous_eval.

Each mode builds the Gin-bound `Trainer` and, when it evaluates, the Gin-bound
`Evaluator`, under the strategy the environment calls for. Training and
evaluation share the strategy and the model; every worker runs the same code
and only the chief writes files.
"""
import re
import sys

import tensorflow as tf

from deeplab2.data.dataset_info import UnknownDatasetError
from deeplab2.data.records import RecordFileError
from deeplab2.evaluation.model_evaluation import Evaluator
from deeplab2.inference import build_predictor
from deeplab2.model import checkpoints, model_dir as model_dir_lib
from deeplab2.training.strategy import create_strategy
from deeplab2.training.train_loop import NonFiniteLossError
from deeplab2.training.trainer import ConfigMismatchError, Trainer, prediction_pictures
from deeplab2.utils import distribute


class MissingDataError(Exception):
    """A configured file pattern or checkpoint that does not exist."""


def check_files(pattern, what: str) -> None:
    if not pattern:
        raise MissingDataError(f"{what} is not set in the Gin config.")
    if not tf.io.gfile.glob(pattern):
        raise MissingDataError(f"{what} {pattern!r} matches no file.")


class _Run:
    """The strategy, trainer, model and (when needed) evaluator of one run."""

    def __init__(self, model_dir: str, tpu, evaluates: bool):
        self.trainer = Trainer(model_dir)
        self.evaluator = Evaluator() if evaluates else None
        if self.evaluator is not None:
            check_files(self.evaluator.file_pattern, "Evaluator.file_pattern")
        self.trainer.setup_runtime()
        self.strategy = create_strategy(tpu)
        print(f"Running with {type(self.strategy).__name__} on "
              f"{self.strategy.num_replicas_in_sync} replica(s).", flush=True)
        self.is_chief = distribute.is_chief(self.strategy)
        self.model_dir = model_dir
        if self.is_chief:
            self.trainer.write_gin_config()
        self.model = self.trainer.build_model(self.strategy)

    def evaluate(self, step: int) -> dict:
        return self.evaluator.evaluate(
            build_predictor(self.model), self.strategy, step=step,
            output_dir=f"{self.model_dir}/eval" if self.is_chief else None)

    def train_loop(self):
        check_files(self.trainer.train_file_pattern, "Trainer.train_file_pattern")
        pictures = None
        if self.trainer.loop_options.image_summary_every:
            if self.evaluator is None:
                pattern = _bound_evaluation_pattern()
                if pattern:
                    pictures = prediction_pictures(self.model, pattern)
            else:
                pictures = prediction_pictures(self.model, self.evaluator.file_pattern)
        return self.trainer.train_loop(self.strategy, self.model, pictures)


def _bound_evaluation_pattern():
    """Evaluator.file_pattern when bound in Gin (for pictures in train mode)."""
    import gin

    try:
        return gin.query_parameter("Evaluator.file_pattern")
    except ValueError:
        return None


def train(run: _Run) -> dict:
    return run.train_loop().train()


def evaluate_latest(run: _Run) -> dict:
    latest = tf.train.latest_checkpoint(run.model_dir)
    if not latest:
        raise MissingDataError(f"No checkpoint to evaluate in {run.model_dir}.")
    step, _ = model_dir_lib.restore_model(run.model, latest)
    return run.evaluate(step)


def train_and_evaluate(run: _Run) -> dict:
    loop = run.train_loop()
    num_steps = run.trainer.num_steps
    every = run.evaluator.every_steps or num_steps
    result = {}
    for until in list(range(every, num_steps, every)) + [num_steps]:
        if int(loop.step.numpy()) < until:
            loop.train(until_step=until)
        else:
            loop.restore()
        result = run.evaluate(int(loop.step.numpy()))
    return result


def continuous_evaluate(run: _Run) -> dict:
    """Evaluates each new checkpoint until the one of the final step."""
    result = {}
    for path in tf.train.checkpoints_iterator(run.model_dir, timeout=run.evaluator.timeout):
        step, _ = model_dir_lib.restore_model(run.model, path)
        result = run.evaluate(step)
        if step >= run.trainer.num_steps:
            break
    return result


def one_line(error: Exception) -> str:
    """The error's message on one line; Gin's added lines ("In call to
    configurable 'X' (<function ...>)") become "(in X)"."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    configurables = [m.group(1) for line in lines
                     for m in [re.match(r"In call to configurable '([\w.]+)'", line)] if m]
    text = " ".join(line for line in lines if not line.startswith("In call to configurable"))
    return text + "".join(f" (in {name})" for name in configurables)


def lost_peer_message(error: Exception, strategy, model_dir: str) -> str:
    """One line for a collective that failed because another process of the
    cluster went away (a preempted or killed worker)."""
    text = " ".join(str(getattr(error, "message", error)).split())
    match = re.search(r"/job:(\w+)/replica:\d+/task:(\d+)", text)
    peer = f"{match.group(1)} {match.group(2)}" if match else "another worker"
    resolver = getattr(strategy, "cluster_resolver", None)
    me = (f"{resolver.task_type} {resolver.task_id}"
          if resolver is not None and getattr(resolver, "task_type", None) else "this worker")
    return (f"lost contact with {peer} ({me} of {distribute.num_workers(strategy)} "
            f"workers reports {type(error).__name__}: {text[:200]}). Restart every worker "
            f"with the same command: training resumes from the last checkpoint in "
            f"{model_dir}.")


MODES = {"train": train, "eval": evaluate_latest, "train_and_eval": train_and_evaluate,
         "continuous_eval": continuous_evaluate}


def run(mode: str, model_dir: str, tpu=None) -> dict:
    """Runs `mode` with the Gin-bound Trainer and Evaluator; exits with a clear
    message on missing or broken data, a mismatched model directory or
    checkpoint, or a non-finite loss."""
    active = None
    try:
        active = _Run(model_dir, tpu, evaluates=mode != "train")
        return MODES[mode](active)
    except (MissingDataError, NonFiniteLossError, RecordFileError, ConfigMismatchError,
            model_dir_lib.ModelDirError, checkpoints.CheckpointError,
            UnknownDatasetError) as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        sys.exit(1)
    except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
            tf.errors.CancelledError) as error:
        if active is None or distribute.num_workers(active.strategy) < 2:
            raise
        print(f"error: {lost_peer_message(error, active.strategy, model_dir)}",
              file=sys.stderr)
        sys.exit(1)
    finally:
        if active is not None and active.is_chief:
            active.trainer.write_gin_config(operative=True)
