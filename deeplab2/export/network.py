"""The network alone at a fixed input size: what the TFLite and ONNX exports convert.

The network takes float32 images `[batch, height, width, 3]` with values in
[0, 255] (the model normalizes them inside) at one fixed size the model
takes, and returns the family's raw outputs by name (`network_outputs` of its
MetaArchitecture; Panoptic-DeepLab: `semantic_logits`, `center_heatmap`,
`offset` at the decoder's stride 4, before the model's final upsampling).
Padding an image to that size, the upsampling and the post-processing run on
the host (deeplab2.export.tflite_postprocess).

`NetworkInfo` is what an exported file carries about itself (as TFLite
metadata or ONNX metadata_props): the model's configuration, the input size,
the outputs' names and shapes, the format and the quantization. With it the
host helpers recognise a file of this library, check the outputs of a run
and post-process them without the model directory.
"""
import dataclasses
import json
from typing import Dict, Mapping, Optional, Sequence, Tuple

import keras
import tensorflow as tf

from deeplab2.model.meta import (ConfigFileError, ModelConfig, config_from_dict,
                                 get_meta_architecture)

INPUT_KEY = "image"
# Key of the JSON `NetworkInfo` in a file's metadata.
METADATA_KEY = "deeplab2.network_info"
# 2: outputs may stop before the model's upsampling (the family's
# `network_outputs`); version 1 files hold outputs at the input size, which
# the same host code reads unchanged (upsampling to the same size copies).
FORMAT_VERSION = 2


class ConversionError(ValueError):
    """A model that does not convert; the message names the family and why."""


class NetworkFileError(ValueError):
    """A TFLite or ONNX file that is not a network exported by this library, or
    outputs that do not fit its description; the message says which."""


@dataclasses.dataclass(frozen=True)
class NetworkInfo:
    """What an exported network is.

    Attributes:
        config: the model's configuration (family, dataset, post-processing).
        input_size: (height, width) of the network's input.
        outputs: the shape of each raw output for one image (without the
            batch dimension), by name.
        file_format: "tflite" or "onnx".
        quantization: "float32", "float16" or "int8".
    """
    config: ModelConfig
    input_size: Tuple[int, int]
    outputs: Mapping[str, Tuple[int, ...]]
    file_format: str
    quantization: str = "float32"

    def to_json(self) -> str:
        return json.dumps({"format_version": FORMAT_VERSION,
                           "model_config": self.config.to_dict(),
                           "input_size": list(self.input_size),
                           "outputs": {k: list(v) for k, v in self.outputs.items()},
                           "format": self.file_format, "quantization": self.quantization})

    @classmethod
    def from_json(cls, text: str, source: str) -> "NetworkInfo":
        """Parses the metadata of the file `source`; one-line errors name it."""
        try:
            values = json.loads(text)
            version = values["format_version"]
        except (KeyError, TypeError, ValueError) as error:
            raise NetworkFileError(f"{source}: unreadable deeplab2 network info "
                                   f"({type(error).__name__}: {error}).") from None
        if version > FORMAT_VERSION:
            raise NetworkFileError(
                f"{source} was exported by a newer deeplab2 (network info format {version}; "
                f"this one reads {FORMAT_VERSION} and older).")
        try:
            return cls(config=config_from_dict(values["model_config"], source),
                       input_size=tuple(int(side) for side in values["input_size"]),
                       outputs={key: tuple(None if d is None else int(d) for d in shape)
                                for key, shape in values["outputs"].items()},
                       file_format=values["format"], quantization=values["quantization"])
        except ConfigFileError as error:
            raise NetworkFileError(str(error)) from None
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise NetworkFileError(f"{source}: unreadable deeplab2 network info "
                                   f"({type(error).__name__}: {error}).") from None


def check_input_size(config: ModelConfig, input_size: Sequence[int]) -> Tuple[int, int]:
    """(height, width) if the model takes inputs of that size, else a
    one-line ValueError naming the size and the family's rule."""
    try:
        return config.check_input_size(tuple(input_size))
    except (TypeError, ValueError) as error:
        nearest = ""
        if len(input_size) == 2 and all(isinstance(s, int) and s > 0 for s in input_size):
            family = get_meta_architecture(config.meta_architecture)
            nearest = " (the next size it takes: {}x{})".format(
                *(family.padded_size(side, config) for side in input_size))
        raise ValueError(f"input_size {tuple(input_size)} does not fit the "
                         f"{config.meta_architecture} model{nearest}: {error}") from None


def network_function(model: keras.Model, input_size: Optional[Sequence[int]]):
    """The network as a tf.function of a batch of float32 images of
    `input_size` (None: of any size), returning the family's
    `network_outputs` by key (float ones as float32)."""
    height, width = input_size if input_size is not None else (None, None)
    family = get_meta_architecture(model.model_config.meta_architecture)

    @tf.function(input_signature=[tf.TensorSpec([None, height, width, 3], tf.float32,
                                                name=INPUT_KEY)])
    def network(images):
        outputs = family.network_outputs(model, images)
        return {key: tf.cast(value, tf.float32) if value.dtype.is_floating else value
                for key, value in sorted(outputs.items())}
    return network


def output_shapes(concrete_function) -> Dict[str, Tuple[int, ...]]:
    """Per-image shapes of the outputs of a traced `network_function`."""
    return {key: tuple(spec.shape[1:])
            for key, spec in sorted(concrete_function.structured_outputs.items())}
