"""`ModelConfig`: everything that defines a model, one JSON file in its model directory.

The built model owns these settings; the input pipeline, the predictor, the
evaluator and the exporter read them from it instead of taking their own. A
model directory holds `model_config.json` beside its checkpoints, so that a
model can be rebuilt, evaluated, exported or served from the directory alone,
without Gin and without the training code.
"""
import dataclasses
import json
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from deeplab2.data.dataset_info import DatasetInfo, dataset_from_dict, dataset_to_dict

CONFIG_FILE = "model_config.json"
# Version of the file format; a reader refuses files of a newer version.
FORMAT_VERSION = 1
_FIELDS = ("meta_architecture", "dataset", "output_stride", "crop_size", "pixel_mean",
           "pixel_std", "architecture", "postprocess")


class ConfigFileError(ValueError):
    """A model configuration that cannot be read; the message names the file."""


def _triple(value, name: str) -> Tuple[float, float, float]:
    values = (value,) * 3 if isinstance(value, (int, float)) else tuple(value)
    if len(values) != 3 or not all(isinstance(v, (int, float)) for v in values):
        raise ValueError(f"{name} must be a number or 3 numbers (R, G, B), got {value!r}.")
    return tuple(float(v) for v in values)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """What a model is and how its inputs and outputs are read.

    Attributes:
        meta_architecture: registered family name, e.g. "panoptic_deeplab".
        dataset: the label space the model predicts.
        output_stride: the stride of the deepest features; input sizes follow
            the family's rule for it (e.g. `k * output_stride + 1`).
        crop_size: (height, width) of the training crop, or None when the
            model was not configured for training.
        pixel_mean, pixel_std: the model normalizes an RGB image x in [0, 255]
            to (x - mean) / std inside; `pixel_mean` is also the value images
            are padded with, which normalizes to 0.
        architecture: the family's architecture options, complete.
        postprocess: the family's post-processing options, complete.
    """
    meta_architecture: str
    dataset: DatasetInfo
    output_stride: int
    crop_size: Optional[Tuple[int, int]]
    pixel_mean: Tuple[float, float, float]
    pixel_std: Tuple[float, float, float]
    architecture: Mapping[str, Any]
    postprocess: Mapping[str, Any]

    @property
    def pad_value(self) -> Tuple[float, float, float]:
        """Image value of padding: normalizes to 0."""
        return self.pixel_mean

    def _family(self):
        """The registered `MetaArchitecture` of `meta_architecture`."""
        from deeplab2.model.meta.registry import get_meta_architecture

        return get_meta_architecture(self.meta_architecture)

    def check_input_size(self, size) -> Tuple[int, int]:
        """(height, width) as ints if the model takes inputs of that size, else
        ValueError (the family's rule, e.g. `k * output_stride + 1`)."""
        return self._family().check_input_size(size, self)

    @property
    def half_pixel_resize(self) -> bool:
        """Whether the family resizes half-pixel (sides `round(size * scale)`)
        rather than align-corners (`MetaArchitecture.half_pixel_resize`)."""
        return self._family().half_pixel_resize

    def replace(self, **changes) -> "ModelConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> Dict[str, Any]:
        """JSON values, with the format version."""
        return {
            "format_version": FORMAT_VERSION,
            "meta_architecture": self.meta_architecture,
            "dataset": dataset_to_dict(self.dataset),
            "output_stride": self.output_stride,
            "crop_size": None if self.crop_size is None else list(self.crop_size),
            "pixel_mean": list(self.pixel_mean),
            "pixel_std": list(self.pixel_std),
            "architecture": _to_json_values(self.architecture),
            "postprocess": _to_json_values(self.postprocess),
        }

    def to_json(self) -> str:
        return _dumps(self.to_dict()) + "\n"


def _dumps(value, indent: int = 0) -> str:
    """JSON with one key per line and short lists kept on one line."""
    pad = "  " * (indent + 1)
    if isinstance(value, dict) and value:
        items = [f"{pad}{json.dumps(k)}: {_dumps(v, indent + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + "  " * indent + "}"
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        if all(isinstance(v, list) and len(json.dumps(v)) < 40 for v in value):
            return "[" + ", ".join(json.dumps(v) for v in value) + "]"
        items = [pad + _dumps(v, indent + 1) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + "  " * indent + "]"
    return json.dumps(value)


def _to_json_values(value):
    """Tuples to lists, recursively (JSON has no tuples)."""
    if isinstance(value, Mapping):
        return {str(k): _to_json_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json_values(v) for v in value]
    return value


def make_config(meta_architecture: str, dataset: DatasetInfo, *, output_stride: int,
                crop_size: Optional[Sequence[int]], pixel_mean, pixel_std,
                architecture: Mapping[str, Any],
                postprocess: Mapping[str, Any]) -> ModelConfig:
    """A complete, validated config: the family fills in and checks its options."""
    from deeplab2.model.meta.registry import get_meta_architecture

    family = get_meta_architecture(meta_architecture)
    if not isinstance(output_stride, int) or output_stride < 1:
        raise ValueError(f"output_stride must be a positive integer, got {output_stride!r}.")
    if crop_size is not None:
        crop_size = tuple(crop_size)
        if len(crop_size) != 2 or not all(isinstance(c, int) and c > 0 for c in crop_size):
            raise ValueError(f"crop_size must be (height, width) in pixels, got {crop_size!r}.")
    std = _triple(pixel_std, "pixel_std")
    if min(std) <= 0:
        raise ValueError(f"pixel_std must be positive, got {std}.")
    config = ModelConfig(
        meta_architecture=meta_architecture, dataset=dataset, output_stride=output_stride,
        crop_size=crop_size, pixel_mean=_triple(pixel_mean, "pixel_mean"), pixel_std=std,
        architecture=dict(architecture or {}), postprocess=dict(postprocess or {}))
    return family.resolve(config)


def config_from_dict(values: Mapping[str, Any], source: str) -> ModelConfig:
    """Reads `ModelConfig.to_dict()` values back; errors name `source`."""
    if not isinstance(values, Mapping):
        raise ConfigFileError(f"{source}: expected a JSON object, got "
                              f"{type(values).__name__}.")
    version = values.get("format_version")
    if not isinstance(version, int):
        raise ConfigFileError(f"{source}: no integer 'format_version'; not a deeplab2 "
                              "model configuration.")
    if version > FORMAT_VERSION:
        raise ConfigFileError(
            f"{source}: format_version {version} was written by a newer deeplab2 (this "
            f"one reads version {FORMAT_VERSION} and older); upgrade deeplab2.")
    missing = [f for f in _FIELDS if f not in values]
    if missing:
        raise ConfigFileError(f"{source}: missing fields {missing}.")
    unknown = sorted(set(values) - set(_FIELDS) - {"format_version"})
    if unknown:
        raise ConfigFileError(f"{source}: unknown fields {unknown}.")
    try:
        return make_config(
            values["meta_architecture"],
            dataset_from_dict(values["dataset"], f"{source}: 'dataset'"),
            output_stride=values["output_stride"], crop_size=values["crop_size"],
            pixel_mean=values["pixel_mean"], pixel_std=values["pixel_std"],
            architecture=values["architecture"], postprocess=values["postprocess"])
    except (KeyError, TypeError, ValueError) as error:
        message = error.args[0] if error.args else str(error)
        raise ConfigFileError(f"{source}: {message}") from None


def config_from_json(text: str, source: str) -> ModelConfig:
    try:
        values = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigFileError(f"{source}: not valid JSON ({error}).") from None
    return config_from_dict(values, source)
