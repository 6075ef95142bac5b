"""Tracing the library's functions as written, without autograph.

Models, losses, post-processing, the predictor and the input pipeline use
TensorFlow's own control flow (tf.cond, tf.while_loop, tf.map_fn) where a
branch or loop depends on a tensor, so autograph's source conversion of every
function they call is tracing time for nothing: about a fifth of a tiny
top-down model's training and evaluation run on 2 cores (cProfile of
scripts/trainer.py). A tensor used as a Python bool then fails at trace time
instead of being converted. tf.function takes `autograph=False`; tf.data
functions take `without_autograph`.
"""
import tensorflow as tf


def without_autograph(function):
    """`function` traced as written (see the module docstring)."""
    return tf.autograph.experimental.do_not_convert(function)
