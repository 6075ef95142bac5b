"""`build_model`: the Gin edge that builds any registered meta-architecture.

    build_model(meta_architecture="panoptic_deeplab", dataset="cityscapes",
                output_stride=16, crop_size=(1025, 2049), backbone="resnet50")

Everything a model is goes through here into its `ModelConfig` (the model's
`model_config` attribute, written to its model directory by the trainer); the
input pipeline, the predictor and the exporter read it from the model.
"""
from typing import Any, Mapping, Optional, Sequence, Union

import gin
import keras
import numpy as np

from deeplab2.data.dataset_info import DatasetInfo, resolve_dataset
from deeplab2.model.meta import ModelConfig, get_meta_architecture, make_config

# The pixel statistics every shipped model normalizes with: x / 127.5 - 1.
DEFAULT_PIXEL_MEAN = 127.5
DEFAULT_PIXEL_STD = 127.5


def _keep_float32(model: keras.Model, names) -> None:
    """Sets the layers of `model` named `names`, and theirs, to compute in
    float32; a name no layer has is an error (a renamed layer would silently
    lose the precision it needs)."""
    found = set()
    for layer in model._flatten_layers(include_self=False):
        if layer.name in names:
            found.add(layer.name)
            for inner in layer._flatten_layers():
                inner.dtype_policy = "float32"
    missing = sorted(set(names) - found)
    if missing:
        raise ValueError(f"bfloat16_float_layers {missing} name no layer of {model.name}.")


# Compute dtypes a model can be built with, and their Keras dtype policies.
COMPUTE_DTYPES = {"float32": "float32", "bfloat16": "mixed_bfloat16"}


@gin.configurable
def build_model(meta_architecture: str = "panoptic_deeplab",
                dataset: Union[str, DatasetInfo] = gin.REQUIRED, *,
                output_stride: int = 32,
                crop_size: Optional[Sequence[int]] = None,
                pixel_mean=DEFAULT_PIXEL_MEAN, pixel_std=DEFAULT_PIXEL_STD,
                postprocess: Optional[Mapping[str, Any]] = None,
                **architecture) -> keras.Model:
    """Builds the model of a registered meta-architecture, with its variables.

    Args:
        meta_architecture: a registered family (`meta_architecture_names()`).
        dataset: a dataset name or DatasetInfo: the label space predicted.
        output_stride: stride of the deepest features (8, 16 or 32).
        crop_size: (height, width) training crop; it sets e.g. the ASPP
            pooling window. None for a model that is not trained.
        pixel_mean, pixel_std: input normalization (x - mean) / std, scalars
            or (R, G, B); also the image padding value is `pixel_mean`.
        postprocess: the family's post-processing options, e.g.
            {"nms_kernel": 13} for Panoptic-DeepLab.
        **architecture: the family's architecture options, e.g.
            backbone="resnet50" (see the family's ARCHITECTURE_DEFAULTS).
    """
    config = make_config(meta_architecture, resolve_dataset(dataset),
                         output_stride=output_stride, crop_size=crop_size,
                         pixel_mean=pixel_mean, pixel_std=pixel_std,
                         architecture=architecture, postprocess=postprocess)
    return model_from_config(config)


def model_from_config(config: ModelConfig, pretrained: bool = True,
                      create_variables: bool = True,
                      compute_dtype: Optional[str] = None) -> keras.Model:
    """The model of a complete `ModelConfig`, as `model.model_config` says.

    Args:
        pretrained: load initial backbone weights the config names (e.g.
            ImageNet); False when a checkpoint will overwrite them.
        create_variables: run one small forward pass so that every variable
            exists (needed before restoring a checkpoint or training).
        compute_dtype: "float32", or "bfloat16" for Keras's mixed precision
            policy: variables stay float32 (the same checkpoints), layers
            compute in bfloat16 (`COMPUTE_DTYPES`) except the family's
            `bfloat16_float_layers`; None: Keras's global policy as it is
            (the trainer's mixed precision sets it for the whole model).
    """
    if compute_dtype is not None and compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(f"compute_dtype must be one of {', '.join(COMPUTE_DTYPES)}, got "
                         f"{compute_dtype!r}.")
    family = get_meta_architecture(config.meta_architecture)
    previous = keras.config.dtype_policy()
    if compute_dtype is not None:
        keras.config.set_dtype_policy(COMPUTE_DTYPES[compute_dtype])
    try:  # layers read the policy when created, some in their first call
        model = family.build(config, pretrained=pretrained)
        model.model_config = config
        if compute_dtype == "bfloat16":
            _keep_float32(model, family.bfloat16_float_layers(config))
        if create_variables:
            side = family.padded_size(2 * config.output_stride, config)
            model(np.zeros((1, side, side, 3), np.float32), training=False)
    finally:
        keras.config.set_dtype_policy(previous)
    return model
