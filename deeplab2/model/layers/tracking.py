"""Keeps layers held in Python lists visible to `tf.train.Checkpoint`.

Keras 3 tracks a list of layers for its own weights, but TensorFlow's
checkpointing does not see inside Keras' lists, so such layers' variables would
silently be left out of checkpoints. Setting each layer also as an attribute
puts it in the checkpoint's object graph; Keras counts each weight once either
way. Attributes are named after the layers, so layers must be given explicit
names (Keras' default names change from one model instance to the next).
"""
from typing import Iterable

import keras


def track_for_checkpoint(owner: keras.layers.Layer, layers: Iterable[keras.layers.Layer]):
    """Sets every layer of `layers` as an attribute of `owner`, under its name."""
    for layer in layers:
        if getattr(owner, layer.name, layer) is not layer:
            raise ValueError(f"{owner.name}: attribute {layer.name!r} is taken; "
                             "give the layer another name.")
        setattr(owner, layer.name, layer)
