"""A Predictor for a model directory: what predict, evaluate and export start from."""
from typing import Any, Mapping, Optional, Sequence, Tuple

from deeplab2.inference.predictor import Predictor
from deeplab2.model.model_dir import restore_model_dir


def load_predictor(model_dir: str, checkpoint: Optional[str] = None, *,
                   scales: Sequence[float] = (1.0,), flip: bool = False,
                   postprocess: Optional[Mapping[str, Any]] = None,
                   shorter_side: Optional[int] = None,
                   max_longer_side: Optional[int] = None,
                   compute_dtype: str = "float32"
                   ) -> Tuple[Predictor, int, str]:
    """(predictor, step, checkpoint path) of a model directory's model with
    the weights of `checkpoint` (default: the latest), test-time augmentation
    and size (see Predictor), post-processing overrides, and the network's
    compute dtype (deeplab2.model.load_model)."""
    model, step, path = restore_model_dir(model_dir, checkpoint, compute_dtype)
    predictor = Predictor(model, scales=scales, flip=flip, postprocess=postprocess,
                          shorter_side=shorter_side, max_longer_side=max_longer_side)
    return predictor, step, path


def parse_overrides(items: Sequence[str]) -> dict:
    """{"key": value} of "key=value" strings, values read as JSON when they
    parse (numbers, booleans), else as strings."""
    import json

    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"expected key=value, got {item!r}.")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return overrides
