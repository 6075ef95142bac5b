"""Bilinear resizing with aligned corners, as in the reference models.

Crop sizes are `k * stride + 1`, so the corner pixels of every feature map
sit on image pixels; align-corners resizing keeps them aligned.

`resize_align_corners` is TensorFlow's kernel (the model's upsampling, with
gradients). `sample_align_corners` computes the same values for chosen output
rows and columns by gathers and linear interpolations: under XLA it fuses into
what reads it (e.g. an argmax over classes), so the full-resolution result is
never stored; `sample_window` upsamples one small window (a tile of
post-processing) from the block of source pixels under it. It interpolates along the
width, then the height, as TensorFlow's kernel does; XLA may fuse a multiply
and an add of an interpolation into one rounding (FMA), so the two can differ
in the last bits.
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


def _source_points(indices, input_side, output_side):
    """(lower, upper, weight of upper) of output `indices` along one axis of an
    align-corners resize from `input_side` to `output_side`, in float32 as
    TensorFlow's kernel computes them."""
    scale = (tf.cast(input_side - 1, tf.float32)
             / tf.cast(tf.maximum(output_side - 1, 1), tf.float32))
    position = tf.cast(indices, tf.float32) * scale
    lower = tf.floor(position)
    upper = tf.minimum(tf.cast(tf.math.ceil(position), tf.int32), input_side - 1)
    return tf.cast(lower, tf.int32), upper, position - lower


def sample_align_corners(images, rows, cols, size):
    """Rows `rows` ([h] int32) and columns `cols` ([w] int32) of the
    align-corners bilinear resize of `images` ([B, H, W, C] float) to `size`
    (height, width): [B, h, w, C]. Sizes may be tensors."""
    shape = tf.shape(images)
    top, bottom, row_weight = _source_points(rows, shape[1], size[0])
    left, right, col_weight = _source_points(cols, shape[2], size[1])
    col_weight = col_weight[None, None, :, None]

    def along_width(source_rows):
        values = tf.gather(images, source_rows, axis=1)
        left_values = tf.gather(values, left, axis=2)
        return left_values + (tf.gather(values, right, axis=2) - left_values) * col_weight

    upper, lower = along_width(top), along_width(bottom)
    return upper + (lower - upper) * row_weight[None, :, None, None]


def _window_weights(indices, input_side, output_side):
    """(first source index, [n, block] interpolation matrix) of the contiguous
    increasing output `indices` along one axis: output i is row i of the
    matrix times the `block` source pixels from the first one. The block's
    length depends only on the sizes (XLA needs it constant)."""
    lower, upper, weight = _source_points(indices, input_side, output_side)
    scale = (tf.cast(input_side - 1, tf.float32)
             / tf.cast(tf.maximum(output_side - 1, 1), tf.float32))
    span = tf.cast(tf.cast(tf.size(indices) - 1, tf.float32) * scale, tf.int32)
    block = tf.minimum(span + 3, input_side)  # one more for float rounding
    first = tf.minimum(lower[0], input_side - block)
    matrix = (tf.one_hot(lower - first, block) * (1.0 - weight)[:, None]
              + tf.one_hot(upper - first, block) * weight[:, None])
    return first, matrix


def sample_window(images, image, rows, cols, size):
    """The window `rows` x `cols` (contiguous increasing output indices, [h]
    and [w] int32) of image `image` (scalar int32) of `images` ([B, H, W, C])
    upsampled to `size` with align corners: [h, w, C].

    Reads only the block of source pixels under the window and interpolates
    it with two small matrix products: equal to `sample_align_corners` up to
    float rounding (weights applied as (1 - t) a + t b), much cheaper per
    window under XLA than gathering four corners per pixel."""
    shape = tf.shape(images)
    top, row_matrix = _window_weights(rows, shape[1], size[0])
    left, col_matrix = _window_weights(cols, shape[2], size[1])
    grid = tf.stack(tf.meshgrid(top + tf.range(tf.shape(row_matrix)[1]),
                                left + tf.range(tf.shape(col_matrix)[1]), indexing="ij"), -1)
    block = tf.gather_nd(images, tf.concat([tf.fill(tf.shape(grid[..., :1]), image), grid],
                                           -1))
    values = tf.einsum("yi,ijc->yjc", row_matrix, block)
    return tf.einsum("xj,yjc->yxc", col_matrix, values)


def resize_by_sampling(images, size):
    """`sample_align_corners` of every output pixel: the align-corners resize
    of `images` to `size`, fusible under XLA."""
    return sample_align_corners(images, tf.range(size[0]), tf.range(size[1]), size)
