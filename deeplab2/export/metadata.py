"""What an exported SavedModel predicts, as one JSON document.

The document holds the model's whole configuration (`model_config`:
meta-architecture, dataset with class names, colors, thing ids, label
divisor and void label, training crop, output stride, normalization,
architecture and post-processing options, as deeplab2.model.meta writes it),
the test-time options the export was built with (`test_time`: scales, flip,
shorter side, maximum longer side), the network's `compute_dtype` (its layers'
arithmetic: float32, or bfloat16 for a model loaded with
`compute_dtype="bfloat16"`) and the signatures with their inputs.

An export carries it twice, from the same dictionary: as the file
`assets.extra/deeplab2_metadata.json` (TF Serving's folder for files it
does not load; readable without TensorFlow) and as the `metadata` signature,
which takes nothing and returns it as the string `metadata`.
"""
import json
import os
from typing import Any, Dict

import tensorflow as tf

from deeplab2.inference import Predictor
from deeplab2.model.meta import ConfigFileError, ModelConfig, config_from_dict

EXTRA_DIR = "assets.extra"
FILE_NAME = "deeplab2_metadata.json"
SIGNATURE = "metadata"
OUTPUT_KEY = "metadata"
FORMAT_VERSION = 1


class MetadataError(ValueError):
    """An export without readable deeplab2 metadata; the message names the file."""


def export_metadata(predictor: Predictor, signatures: Dict[str, Dict[str, Any]]
                    ) -> Dict[str, Any]:
    """The metadata of an export of `predictor` whose signatures take the
    inputs described in `signatures` ({name: {input: description}})."""
    return {
        "format_version": FORMAT_VERSION,
        "model_config": predictor.config.to_dict(),
        "test_time": {"scales": list(predictor.scales), "flip": predictor.flip,
                      "shorter_side": predictor.shorter_side,
                      "max_longer_side": predictor.max_longer_side},
        "compute_dtype": predictor.compute_dtype,
        "signatures": signatures,
    }


def metadata_function(metadata: Dict[str, Any]) -> tf.types.experimental.GenericFunction:
    """The `metadata` signature: no input, the JSON document out."""
    text = json.dumps(metadata, sort_keys=True)

    @tf.function(input_signature=[])
    def read_metadata():
        return {OUTPUT_KEY: tf.constant(text)}
    return read_metadata


def metadata_path(saved_model_dir: str) -> str:
    return os.path.join(saved_model_dir, EXTRA_DIR, FILE_NAME)


def write_metadata(metadata: Dict[str, Any], saved_model_dir: str) -> None:
    tf.io.gfile.makedirs(os.path.join(saved_model_dir, EXTRA_DIR))
    with tf.io.gfile.GFile(metadata_path(saved_model_dir), "w") as f:
        f.write(json.dumps(metadata, indent=2, sort_keys=True))


def read_metadata(saved_model_dir: str) -> Dict[str, Any]:
    """The metadata file of an export; MetadataError when it is missing or
    unreadable (one line naming the file)."""
    path = metadata_path(saved_model_dir)
    if not tf.io.gfile.exists(path):
        raise MetadataError(f"{path} not found: {saved_model_dir} is not a SavedModel "
                            "exported by deeplab2's scripts/export_model.py (or by an "
                            "older version).")
    try:
        with tf.io.gfile.GFile(path) as f:
            metadata = json.loads(f.read())
        version = metadata["format_version"]
    except (KeyError, TypeError, ValueError) as error:
        raise MetadataError(f"{path}: unreadable deeplab2 metadata "
                            f"({type(error).__name__}: {error}).") from None
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise MetadataError(f"{path}: metadata format {version!r}; this deeplab2 reads "
                            f"{FORMAT_VERSION} and older.")
    return metadata


def exported_config(saved_model_dir: str) -> ModelConfig:
    """The model configuration an export records; MetadataError otherwise."""
    metadata = read_metadata(saved_model_dir)
    path = metadata_path(saved_model_dir)
    try:
        return config_from_dict(metadata["model_config"], path)
    except KeyError:
        raise MetadataError(f"{path}: no 'model_config' field.") from None
    except ConfigFileError as error:
        raise MetadataError(str(error)) from None
