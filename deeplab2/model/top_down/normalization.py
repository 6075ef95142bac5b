"""Normalization of the top-down necks and heads, chosen by name.

- None: none, the Mask R-CNN / Panoptic FPN standard (SPEC_TOP_DOWN.md
  section 1); the layer before keeps its bias.
- "batch_norm": batch norm synchronized across replicas (on one device plain
  batch norm), Seamless's in-place ABN in the FPN, RPN and semantic head
  (paper 002 section 3); momentum and epsilon given (default 0.99, 1e-5).
- "group_norm": 32 groups of at least two channels (fewer groups for fewer
  than 64 channels: gcd(32, channels // 2), so slim test widths still
  normalize over more than one value), epsilon 1e-5 (Keras's default 1e-3 is
  not PyTorch's), Seamless's region heads (SPEC section 7 item 8).
A convolution or dense layer followed by a normalization has no bias.
"""
import math

import keras

from deeplab2.model.layers.fused_batch_norm import FusedBatchNormalization

NORMALIZATIONS = (None, "batch_norm", "group_norm")
GROUPS = 32
EPSILON = 1e-5
BN_MOMENTUM = 0.99


def check(kind, owner: str):
    """Raises ValueError naming `owner` unless `kind` is one of NORMALIZATIONS."""
    if kind not in NORMALIZATIONS:
        raise ValueError(f"{owner}: normalization must be one of {NORMALIZATIONS}, "
                         f"got {kind!r}.")


def norm_layer(kind, name: str, channels: int, bn_momentum: float = BN_MOMENTUM,
               bn_epsilon: float = EPSILON):
    """A new normalization layer of `kind` named `name` for `channels`, None for
    None; `bn_momentum` and `bn_epsilon` are batch norm's."""
    if kind is None:
        return None
    if kind == "batch_norm":
        return FusedBatchNormalization(momentum=bn_momentum, epsilon=bn_epsilon,
                                       synchronized=True, name=name)
    if kind == "group_norm":
        groups = math.gcd(GROUPS, max(channels // 2, 1))
        return keras.layers.GroupNormalization(groups, epsilon=EPSILON, name=name)
    check(kind, name)
