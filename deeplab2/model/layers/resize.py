"""Bilinear resizing with aligned corners, as in the reference models.

Crop sizes are `k * stride + 1`, so the corner pixels of every feature map
sit on image pixels; align-corners resizing keeps them aligned.
"""
import tensorflow as tf


def resize_align_corners(images, size):
    """Bilinear resize of NHWC `images` to `size` (height, width)."""
    return tf.raw_ops.ResizeBilinear(images=images, size=size,
                                     align_corners=True,
                                     half_pixel_centers=False)


def scale_align_corners(input_size, output_size):
    """Per-axis coordinate scale of an align-corners resize, as float32."""
    input_size = tf.cast(input_size, tf.float32)
    output_size = tf.cast(output_size, tf.float32)
    return (output_size - 1.0) / tf.maximum(input_size - 1.0, 1.0)
