"""`trainer.py`: parses Gin configs and flags, then trains and/or evaluates.

    trainer.py --gin_config=synthetic/quickstart.gin --model_dir=runs/x --mode=train

Everything a run needs is bound in Gin (see deeplab2/configs; a config is a path
or a name under that folder); the bindings given are written to
`model_dir/config.gin`, the values used to `operative_config.gin`, and the
model's own configuration to `model_dir/model_config.json`.
"""
import sys

from absl import app, flags

from deeplab2.training.config import define_gin_flags, parse_gin_flags_or_exit
from deeplab2.utils.console import configure_logging

FLAGS = flags.FLAGS
define_gin_flags()
flags.DEFINE_string("model_dir", None, "Checkpoints, summaries and results.")
flags.DEFINE_enum("mode", "train", ["train", "eval", "train_and_eval", "continuous_eval"],
                  "What to run.")
flags.DEFINE_string("tpu", None, "TPU name or address (selects TPUStrategy).")


def run_mode(mode: str, model_dir: str, tpu=None) -> None:
    from deeplab2.training import runner

    runner.run(mode, model_dir, tpu=tpu)


def main(argv) -> None:
    del argv
    if not FLAGS.model_dir:
        raise app.UsageError("--model_dir is required.")
    configure_logging()
    parse_gin_flags_or_exit()
    from deeplab2.utils.paths import OutputPathError, prepare_output_dir

    try:
        prepare_output_dir(FLAGS.model_dir, "--model_dir")
    except OutputPathError as error:
        sys.exit(f"error: {error}")
    run_mode(FLAGS.mode, FLAGS.model_dir, FLAGS.tpu)


def run() -> None:
    """Console-script entry point (`deeplab2-trainer`)."""
    app.run(main)


if __name__ == "__main__":
    run()
