"""Frozen parts of a backbone (SPEC_TOP_DOWN.md section 1, "Backbone and solver").

Mask R-CNN-style training keeps the ImageNet batch-norm statistics and affine
parameters fixed ("frozen BN") and does not train the first stages. Both go
through Keras' `trainable` flag, so the frozen weights are left out of
`trainable_variables` (no gradient, no optimizer slot, not counted as trainable
parameters) and stay in checkpoints. A batch norm that is not trainable uses
its moving statistics in training too (Keras; `ConvBNAct` then folds it into
the convolution).
"""
import keras

# freeze_at values: 0 freezes nothing; k >= 2 freezes every layer of the
# backbone stages up to the one giving "res<k>". The library's backbones put
# the stem in the "res2" stage, so the stem alone (detectron2's 1) is no option.
FREEZE_AT = (0, 2, 3, 4, 5)


def freeze_backbone(backbone: keras.Model, *, freeze_at: int, frozen_bn: bool) -> None:
    """Marks the frozen layers of a `backbones.Backbone` not trainable.

    Args:
        backbone: its `stages` are (layers, feature key) in network order.
        freeze_at: one of FREEZE_AT.
        frozen_bn: also freeze every batch norm of the backbone.
    """
    if freeze_at not in FREEZE_AT:
        raise ValueError(f"freeze_at must be one of {FREEZE_AT}, got {freeze_at!r}.")
    if freeze_at:
        frozen_keys = {f"res{level}" for level in range(2, freeze_at + 1)}
        for layers, key in backbone.stages:
            if key in frozen_keys:
                for layer in layers:
                    layer.trainable = False
    if frozen_bn:
        for layer in backbone._flatten_layers():
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
