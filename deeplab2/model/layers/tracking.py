"""Keeps layers held in Python lists visible to `tf.train.Checkpoint`.

Keras 3 tracks a list of layers for its own weights, but TensorFlow's
checkpointing does not see inside Keras' lists, so such layers' variables would
silently be left out of checkpoints. Setting each layer also as an attribute
puts it in the checkpoint's object graph; Keras counts each weight once either
way. Attributes are named by position (`{prefix}{i}`), not by layer name:
Keras makes default layer names unique per process ("conv", "conv_1", ...),
and a checkpoint must restore into a model built a second time.
"""
from typing import Iterable

import keras


def track_for_checkpoint(owner: keras.layers.Layer, layers: Iterable[keras.layers.Layer],
                         prefix: str = "tracked_layer_"):
    """Sets the i-th layer of `layers` as attribute `{prefix}{i}` of `owner`."""
    for index, layer in enumerate(layers):
        name = f"{prefix}{index}"
        if getattr(owner, name, layer) is not layer:
            raise ValueError(f"{owner.name}: attribute {name!r} is taken.")
        setattr(owner, name, layer)
