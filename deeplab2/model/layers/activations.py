"""Activation functions by name, as layers of the library refer to them.

Keras's names, except "leaky_relu": the slope 0.01 of in-place activated batch
norm (Seamless Scene Segmentation, paper 002), where Keras's own default is 0.2.
"""
import functools

import keras
from keras import ops

LEAKY_RELU_SLOPE = 0.01


def get(name):
    """The activation function called `name` (None: the identity)."""
    if name == "leaky_relu":
        return functools.partial(ops.leaky_relu, negative_slope=LEAKY_RELU_SLOPE)
    if name is None:
        return lambda x: x
    return keras.activations.get(name)
