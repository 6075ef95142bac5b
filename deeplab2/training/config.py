"""Parses Gin config files and bindings into one clear error on failure.

Config files ship inside the package (deeplab2/configs). A config file given
on the command line is a path, or a name under deeplab2/configs (e.g.
"cityscapes/resnet50_os32.gin"); an `include` resolves from the working
directory, then from the including file's folder, then from deeplab2/configs,
so configs work from any directory.

Gin is how a person writes an experiment; it binds the edges only (the
trainer, the evaluator, the builders of the model, the optimizer and the input
stream, and the model family's targets and loss). A binding that would not
change what runs is an error: Gin refuses unknown parameters, and the
parameters that other code sets (a model's dataset, crop or output stride as
read by the pipeline, the loss's ignore label, ...) are denylisted. For names
that moved or that belong elsewhere, the error says where the value comes
from.
"""
import contextlib
import logging
import os
import re
import sys
from typing import List, Optional

import gin
from absl import flags

CONFIGS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "configs")
# Folders of the config files being parsed, innermost last.
_INCLUDING: List[str] = []

# Configurable or parameter names of earlier versions, or owned by another
# part, and where their values come from now.
HINTS = {
    "Experiment": "Experiment was split into Trainer (training: file pattern, batch, "
                  "steps, checkpoints, precision, seed) and Evaluator (evaluation: "
                  "file pattern, batch, crop, pictures, every_steps); the dataset is "
                  "build_model.dataset and the training crop build_model.crop_size.",
    "build_dataset": "build_dataset became TrainingInput (augmentation and shuffling); "
                     "the training targets' options are PanopticDeepLabTargets.*; the "
                     "crop, output stride and dataset are the model's (build_model.*).",
    "build_predictor.output_stride": "the output stride is the model's: "
                                     "build_model.output_stride.",
    "build_predictor.center_threshold": "post-processing options are the model's: "
                                        "build_model.postprocess = {...}.",
    "build_predictor.nms_kernel": "post-processing options are the model's: "
                                  "build_model.postprocess = {...}.",
    "build_predictor.keep_k_centers": "post-processing options are the model's: "
                                      "build_model.postprocess = {...}.",
    "build_predictor.stuff_area_limit": "post-processing options are the model's: "
                                        "build_model.postprocess = {...}.",
    "WeightedBootstrappedCrossEntropy": "bind PanopticDeepLabLoss.top_k_percent.",
    "CenterHeatmapMSE": "bind PanopticDeepLabLoss.center_weight.",
    "OffsetL1": "bind PanopticDeepLabLoss.offset_weight.",
    "PanopticDeepLabLoss.ignore_label": "the ignore label is the model's dataset's.",
    "PanopticDeepLabLoss.semantic_only": "it follows the model: "
                                        "build_model.semantic_only.",
    "PanopticDeepLabTargets.dataset_info": "the dataset is the model's: "
                                           "build_model.dataset.",
    "build_optimizer.num_steps": "the schedule spans Trainer.num_steps.",
    "build_predictor.model": "the predictor takes the trained model.",
    "build_model.num_classes": "the classes are the dataset's: build_model.dataset.",
}


class ConfigError(Exception):
    """A Gin config that cannot be applied; the message says which file or binding."""


def register_configurables() -> None:
    """Imports every module that declares a Gin configurable: the trainer's and
    every built-in model family's (their targets and losses)."""
    import deeplab2.training.runner  # noqa: F401
    from deeplab2.model.meta import get_meta_architecture, meta_architecture_names

    for name in meta_architecture_names():
        get_meta_architecture(name)


def _hint(message: str) -> str:
    """The HINTS entries whose names the error message mentions."""
    found = [text for name, text in HINTS.items()
             if re.search(rf"(?<![\w.]){re.escape(name)}(?![\w])", message)]
    return (" Hint: " + " ".join(dict.fromkeys(found))) if found else ""


def resolve_config_file(path: str) -> Optional[str]:
    """The file a config name refers to: the path itself, else relative to the
    folders of the including files (innermost first), else under CONFIGS_DIR."""
    if os.path.isfile(path):
        return path
    if os.path.isabs(path):
        return None
    for folder in reversed(_INCLUDING + [CONFIGS_DIR]):
        candidate = os.path.join(folder, path)
        if os.path.isfile(candidate):
            return candidate
    return None


@contextlib.contextmanager
def _open_config(path: str):
    """Opens a config file for Gin, making its folder the first place its own
    includes are looked up."""
    resolved = resolve_config_file(path)
    _INCLUDING.append(os.path.dirname(os.path.abspath(resolved)))
    try:
        with open(resolved) as f:
            yield f
    finally:
        _INCLUDING.pop()


gin.config.register_file_reader(_open_config, lambda path: resolve_config_file(path)
                                is not None)


class _GinPackagePathMiss(logging.Filter):
    """Drops the error Gin's Python-package reader logs for every include it
    cannot place before our reader (registered after it) finds the file."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.pathname.endswith(os.path.join("gin", "resource_reader.py"))
                    and record.getMessage().startswith("Path not found:"))


@contextlib.contextmanager
def _quiet_package_path_misses():
    root = logging.getLogger()
    miss_filter = _GinPackagePathMiss()
    root.addFilter(miss_filter)
    try:
        yield
    finally:
        root.removeFilter(miss_filter)


def parse_gin(config_files: List[str], bindings: List[str]) -> None:
    """Parses configs and bindings, turning Gin's errors into one clear message."""
    register_configurables()
    resolved = []
    for path in config_files:
        found = resolve_config_file(path)
        if found is None:
            raise ConfigError(f"Cannot read Gin config file {path!r}: no such file, "
                              f"nor under {CONFIGS_DIR}.")
        resolved.append(found)
    try:
        with _quiet_package_path_misses():
            for path in resolved:
                with _open_config(path) as f:
                    gin.parse_config(f)
            gin.parse_config(bindings)
        gin.finalize()
    except (ValueError, KeyError, TypeError, SyntaxError, IOError) as error:
        sources = ", ".join(config_files + [f"--gin_bindings={b!r}" for b in bindings])
        message = " ".join(str(error).split())
        raise ConfigError(f"Invalid Gin configuration ({sources}): {message}"
                          f"{_hint(message)}") from None


def define_gin_flags() -> None:
    """Defines --gin_config and --gin_bindings for a command-line entry point."""
    flags.DEFINE_multi_string("gin_config", [], "Gin config files, applied in order.")
    flags.DEFINE_multi_string("gin_bindings", [], "Extra Gin bindings, e.g. "
                              "'Trainer.num_steps = 100'.")


def parse_gin_flags_or_exit() -> None:
    """Parses the --gin_config / --gin_bindings flags; on a bad config prints the
    error and exits with status 2 (for command-line entry points)."""
    try:
        parse_gin(flags.FLAGS.gin_config, flags.FLAGS.gin_bindings)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


# google-research/deeplab2's configs, by its names (deeplab2/configs/deeplab2/).
DEEPLAB2_CONFIGS = "deeplab2"


def deeplab2_config_names() -> List[str]:
    """Names of deeplab2's configs with a Gin file: "resnet50_os32", ...,
    and their COCO counterparts "coco/resnet50_os32", ..."""
    root = os.path.join(CONFIGS_DIR, DEEPLAB2_CONFIGS)
    names = []
    for folder in ("", "coco"):
        directory = os.path.join(root, folder)
        names += [os.path.join(folder, name[:-len(".gin")]) if folder else name[:-len(".gin")]
                  for name in sorted(os.listdir(directory)) if name.endswith(".gin")]
    return names


def deeplab2_config_file(name: str) -> str:
    """The Gin file of deeplab2's config `name` (e.g. "mobilenet_v3_small_os16"
    or "coco/resnet50_os32"); a clear error naming the known ones."""
    names = deeplab2_config_names()
    if name not in names:
        raise ConfigError(f"unknown deeplab2 config {name!r}; known: {', '.join(names)}.")
    return os.path.join(CONFIGS_DIR, DEEPLAB2_CONFIGS, name + ".gin")


def model_options(config_file: str, bindings: List[str] = ()) -> dict:
    """The `build_model` arguments a Gin config binds (macros resolved), to
    build its model without the trainer. Clears the global Gin config."""
    gin.clear_config()
    try:
        parse_gin([config_file], list(bindings))
        return dict(gin.get_bindings("build_model"))
    finally:
        gin.clear_config()
