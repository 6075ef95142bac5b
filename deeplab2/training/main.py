"""`trainer.py`: parses Gin configs and flags, then trains and/or evaluates.

    trainer.py --gin_config=configs/synthetic/quickstart.gin --model_dir=runs/x --mode=train

Everything a run needs is bound in Gin (see configs/); the resolved config is
written to `model_dir/operative_config.gin`.
"""
import sys
from typing import List

import gin
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("gin_config", [], "Gin config files, applied in order.")
flags.DEFINE_multi_string("gin_bindings", [], "Extra Gin bindings, e.g. "
                          "'Experiment.num_steps = 100'.")
flags.DEFINE_string("model_dir", None, "Checkpoints, summaries and results.")
flags.DEFINE_enum("mode", "train", ["train", "eval", "train_and_eval", "continuous_eval"],
                  "What to run.")
flags.DEFINE_string("tpu", None, "TPU name or address (selects TPUStrategy).")


class ConfigError(Exception):
    """A Gin config that cannot be applied; the message says which file or binding."""


def parse_gin(config_files: List[str], bindings: List[str]) -> None:
    """Parses configs and bindings, turning Gin's errors into one clear message."""
    # Importing the runner registers every configurable a config may bind.
    import deeplab2.training.runner  # noqa: F401

    for path in config_files:
        try:
            open(path).close()
        except OSError as error:
            raise ConfigError(f"Cannot read Gin config file {path!r}: {error.strerror}.")
    try:
        gin.parse_config_files_and_bindings(config_files, bindings)
    except (ValueError, KeyError, TypeError, SyntaxError) as error:
        sources = ", ".join(config_files + [f"--gin_bindings={b!r}" for b in bindings])
        raise ConfigError(f"Invalid Gin configuration ({sources}): {error}") from None


def run_mode(mode: str, model_dir: str, tpu=None) -> None:
    from deeplab2.training import runner

    runner.run(mode, model_dir, tpu=tpu)


def main(argv) -> None:
    del argv
    if not FLAGS.model_dir:
        raise app.UsageError("--model_dir is required.")
    try:
        parse_gin(FLAGS.gin_config, FLAGS.gin_bindings)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    run_mode(FLAGS.mode, FLAGS.model_dir, FLAGS.tpu)


def run() -> None:
    """Console-script entry point (`deeplab2-trainer`)."""
    app.run(main)


if __name__ == "__main__":
    run()
