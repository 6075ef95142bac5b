"""Parses Gin config files and bindings into one clear error on failure."""
import sys
from typing import List

import gin
from absl import flags


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


def define_gin_flags() -> None:
    """Defines --gin_config and --gin_bindings for a command-line entry point."""
    flags.DEFINE_multi_string("gin_config", [], "Gin config files, applied in order.")
    flags.DEFINE_multi_string("gin_bindings", [], "Extra Gin bindings, e.g. "
                              "'Experiment.num_steps = 100'.")


def parse_gin_flags_or_exit() -> None:
    """Parses the --gin_config / --gin_bindings flags; on a bad config prints the
    error and exits with status 2 (for command-line entry points)."""
    try:
        parse_gin(flags.FLAGS.gin_config, flags.FLAGS.gin_bindings)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
