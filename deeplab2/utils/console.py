"""Console behaviour of the command-line entry points: quiet unless asked.

By default a command prints its own progress and results only: TensorFlow's
C++ INFO and WARNING lines and absl INFO lines (e.g. checkpoint timings) are
hidden.
`--verbosity=0` (absl's flag) or higher shows them.
"""
import os

from absl import flags
from absl import logging


def configure_logging() -> None:
    """Call at the start of an entry point's main, after flags are parsed and
    before TensorFlow is imported."""
    verbosity = flags.FLAGS["verbosity"] if "verbosity" in flags.FLAGS else None
    if verbosity is not None and verbosity.present:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.set_verbosity(logging.WARNING)
