"""Model directories: a model's configuration beside its checkpoints.

A model directory holds `model_config.json` (deeplab2.model.meta.ModelConfig)
and checkpoints whose object graph keeps the model under the key "model" (the
trainer adds its step, optimizer and random states beside it). Everything
needed to rebuild the model and restore its weights is there: no Gin, no
training code.
"""
import os
import shutil
import tempfile
from typing import Optional, Tuple

import keras
import tensorflow as tf

from deeplab2.model import checkpoints
from deeplab2.model.builder import model_from_config
from deeplab2.model.meta import CONFIG_FILE, ConfigFileError, ModelConfig, config_from_json
from deeplab2.utils.paths import write_atomically

# Key of the model in checkpoints; "step" holds the training step.
CHECKPOINT_MODEL_KEY = "model"
CHECKPOINT_STEP_KEY = "step"


class ModelDirError(ValueError):
    """A model directory or checkpoint that cannot be used; the message says why."""


def config_path(model_dir: str) -> str:
    return os.path.join(model_dir, CONFIG_FILE)


def write_model_config(model_dir: str, config: ModelConfig) -> str:
    """Writes `model_dir/model_config.json` atomically; returns its path."""
    tf.io.gfile.makedirs(model_dir)
    path = config_path(model_dir)
    if "://" in model_dir:  # object stores: a single write is atomic
        with tf.io.gfile.GFile(path, "w") as f:
            f.write(config.to_json())
        return path
    def write(temporary):
        with open(temporary, "w") as f:
            f.write(config.to_json())

    write_atomically(path, write)
    return path


def read_model_config(model_dir: str) -> ModelConfig:
    """The config of a model directory; one-line errors name the file."""
    path = config_path(model_dir)
    if not tf.io.gfile.isdir(model_dir):
        raise ModelDirError(f"{model_dir} is not a directory (expected a model directory "
                            f"with {CONFIG_FILE} and checkpoints).")
    if not tf.io.gfile.exists(path):
        raise ModelDirError(
            f"{path} not found: a model directory holds the model's configuration, "
            "written by trainer.py when it starts (or by import_deeplab2.py).")
    with tf.io.gfile.GFile(path) as f:
        text = f.read()
    try:
        return config_from_json(text, path)
    except ConfigFileError as error:
        raise ModelDirError(str(error)) from None


def resolve_checkpoint(path: str) -> str:
    """A checkpoint prefix, or the latest checkpoint of a folder; clear error if none."""
    if tf.io.gfile.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if not latest:
            raise ModelDirError(f"no checkpoint in {path}.")
        return latest
    if not tf.io.gfile.glob(path + ".index"):
        raise ModelDirError(f"no checkpoint {path} (expected {path}.index).")
    return path


def _describe(config: ModelConfig) -> str:
    backbone = config.architecture.get("backbone")
    return (f"the {config.meta_architecture} model"
            + (f" with backbone {backbone!r}" if backbone else "")
            + f" for {config.dataset.name} ({config.dataset.num_classes} classes)")


def restore_model(model: keras.Model, checkpoint: str) -> Tuple[int, str]:
    """Restores every variable of `model` from a trainer checkpoint (a prefix
    or a folder: its latest one), strictly: a variable missing from the
    checkpoint, or of another shape, is an error. Returns (step, path)."""
    path = resolve_checkpoint(checkpoint)
    step = tf.Variable(0, dtype=tf.int64)
    objects = {CHECKPOINT_MODEL_KEY: model, CHECKPOINT_STEP_KEY: step}
    what = (_describe(model.model_config) if hasattr(model, "model_config")
            else f"model {model.name}")
    try:
        report = checkpoints.compare(
            checkpoints.checkpoint_variables(model, CHECKPOINT_MODEL_KEY), path,
            tf.train.load_checkpoint(path))
    except (tf.errors.OpError, ValueError) as error:
        raise ModelDirError(f"cannot read checkpoint {path}: "
                            f"{' '.join(str(error).split())[:300]}") from None
    if report.missing or report.mismatched:
        raise ModelDirError(f"checkpoint {path} does not fit {what}: {report.details()}")
    try:
        status = tf.train.Checkpoint(**objects).restore(path).expect_partial()
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as error:
        detail = " ".join(str(error).split())
        raise ModelDirError(f"checkpoint {path} does not fit {what}: "
                            f"{detail[:400]}") from None
    print(f"Restored {report.summary()}", flush=True)
    return int(step.numpy()), path


def restore_model_dir(model_dir: str, checkpoint: Optional[str] = None,
                      compute_dtype: str = "float32") -> Tuple[keras.Model, int, str]:
    """(model, step, checkpoint path): the model of `model_dir/model_config.json`
    with the weights of `checkpoint` (default: the directory's latest),
    computing in `compute_dtype` (see `model_from_config`)."""
    config = read_model_config(model_dir)
    model = model_from_config(config, pretrained=False, compute_dtype=compute_dtype)
    step, path = restore_model(model, checkpoint or model_dir)
    return model, step, path


def load_model(model_dir: str, checkpoint: Optional[str] = None,
               compute_dtype: str = "float32") -> keras.Model:
    """The trained Keras model of a model directory.

    Called on float32 images in [0, 255] (`[N, H, W, 3]`) it returns the
    family's output dict at input resolution; `model.model_config` holds its
    settings (dataset, output stride, post-processing options, ...).

    Args:
        model_dir: a folder with `model_config.json` and checkpoints.
        checkpoint: a checkpoint prefix or folder; default: the latest in
            `model_dir`.
        compute_dtype: "bfloat16" runs the network in bfloat16 (Keras mixed
            precision; about 2.8x faster on CPUs with AMX or AVX512-BF16,
            slower elsewhere); outputs and post-processing stay float32.
    """
    return restore_model_dir(model_dir, checkpoint, compute_dtype)[0]


def write_model_dir(model: keras.Model, output_dir: str, step: int = 0,
                    extra_files: Optional[dict] = None) -> str:
    """Writes a new model directory (config + one checkpoint of `model`, laid
    out as the trainer's) atomically: into a temporary sibling folder renamed
    at the end, so a failure leaves no directory behind. `output_dir` must not
    exist or be empty. `extra_files` maps file names to text. Returns the
    checkpoint path."""
    if tf.io.gfile.exists(output_dir) and tf.io.gfile.listdir(output_dir):
        raise ModelDirError(f"{output_dir} exists and is not empty; choose a new "
                            "output directory.")
    parent = os.path.dirname(os.path.abspath(output_dir))
    os.makedirs(parent, exist_ok=True)
    temporary = tempfile.mkdtemp(prefix=f".{os.path.basename(output_dir)}-", dir=parent)
    os.chmod(temporary, 0o755)
    try:
        objects = {CHECKPOINT_MODEL_KEY: model,
                   CHECKPOINT_STEP_KEY: tf.Variable(step, dtype=tf.int64)}
        manager = tf.train.CheckpointManager(tf.train.Checkpoint(**objects), temporary,
                                             max_to_keep=1)
        path = manager.save(checkpoint_number=step)
        write_model_config(temporary, model.model_config)
        for name, text in (extra_files or {}).items():
            with open(os.path.join(temporary, name), "w") as f:
                f.write(text)
        if os.path.isdir(output_dir):
            os.rmdir(output_dir)  # empty, checked above
        os.replace(temporary, output_dir)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    # CheckpointManager records checkpoints relative to their folder, so the
    # renamed folder's `checkpoint` file points inside it.
    return os.path.join(output_dir, os.path.basename(path))
