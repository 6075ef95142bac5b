"""Deformable convolution v1 (Dai et al. 2017), UPSNet's semantic-head layer.

Output pixel p sums, over the k x k taps p_t of an ordinary 'same' convolution
(stride 1), the input sampled at p + p_t + offset_t(p), weighted by the tap's
kernel. The offsets come from a plain k x k convolution of the same input with
2 k^2 channels, (dy, dx) per tap in row-major order, started at zero so a new
layer is an ordinary convolution (SPEC_TOP_DOWN.md section 3). Sampling is
bilinear with zero padding: a corner of the bilinear cell outside the map
contributes nothing.

The corner rows and bilinear weights of all taps are computed at once (they
have no channel axis); the sampling is one `tf.gather` of the four corners
on the [B * H * W, C] input, whose gradient is a segment sum, and it compiles
under XLA. Small maps (k^2 samples of at most `all_taps_max_elements`) sample
every tap at once, as [B * H * W, k^2 * C] columns that one matrix product
with the [k^2 * C, O] kernel turns into the output: k^2 times fewer sampling
and product ops in the graph, and as fast or faster up to a few million
elements (forward and gradient,
`scripts/benchmark.py gradients --cases deformable --scale s` for s = 1, 1.5,
2, 2.8: 1.5x at 0.9M elements, 1.14x at 3.0M, 0.89x at 7.1M, 0.74x at 20M,
where the k^2 samples no longer fit in the caches). Larger maps are
sampled one tap at a time, in training on maps of `recompute_min_elements`
and more each tap under `tf.recompute_grad`, so neither the forward pass nor
the gradient holds the k^2 sampled columns at once (at P2 of an 800 x 1333
image with 256 channels they would be 154M floats). Both products are
`tf.matmul`s, which `deeplab2.model.profile` counts as multiply-adds.
"""
import keras
import tensorflow as tf
from keras import ops


def bilinear_corners(batch_offsets, height, width, y, x):
    """The bilinear corners of float coordinates y, x ([B, ...], pixel
    centres at integers) in a map flattened to [B * H * W, C] (rows of image
    b at b * H * W, `batch_offsets` [B, 1, ...]): their rows [4, B, ...] and
    weights [4, B, ..., 1], corners in the order (y0, x0), (y0, x1),
    (y1, x0), (y1, x1). A corner outside the map gets weight 0 (zero padding)
    and a clipped row."""
    y0 = tf.floor(y)
    x0 = tf.floor(x)
    fy = y - y0
    fx = x - x0
    y0 = tf.cast(y0, tf.int32)
    x0 = tf.cast(x0, tf.int32)
    rows, weights = [], []
    for dy, wy in ((0, 1.0 - fy), (1, fy)):
        for dx, wx in ((0, 1.0 - fx), (1, fx)):
            row, col = y0 + dy, x0 + dx
            inside = (row >= 0) & (row < height) & (col >= 0) & (col < width)
            rows.append(batch_offsets + tf.clip_by_value(row, 0, height - 1) * width
                        + tf.clip_by_value(col, 0, width - 1))
            weights.append(tf.where(inside, wy * wx, 0.0))
    return tf.stack(rows), tf.stack(weights)[..., None]


def bilinear_sample(flat, rows, weights):
    """Sums the 4 corners' rows of `flat` ([B * H * W, C]) weighted:
    `rows` [4, ...] and `weights` [4, ..., 1] as from `bilinear_corners`.
    Returns [..., C] in the weights' dtype. One gather of all four corners:
    its gradient is one segment sum, where four gathers' gradients would be
    concatenated first."""
    corners = tf.cast(tf.gather(flat, rows), weights.dtype)
    return tf.reduce_sum(weights * corners, axis=0)


@keras.saving.register_keras_serializable(package="deeplab2")
class DeformableConv2D(keras.layers.Layer):
    """k x k deformable convolution v1, stride 1, 'same' padding.

    Call with [B, H, W, C]; returns [B, H, W, filters]. Variables: `kernel`
    [k, k, C, filters] (as `keras.layers.Conv2D`'s, so zero offsets give
    exactly `tf.nn.conv2d` with it), `bias` [filters] if `use_bias`, and the
    offset convolution `offset_conv` (2 k^2 channels, bias, zero init).

    Args:
        filters: output channels.
        kernel_size: odd k (3).
        use_bias: add a bias (UPSNet's DCN has one).
        kernel_initializer, bias_initializer: of `kernel` and `bias`.
        recompute_min_elements: in training, taps whose [B, H, W, C] sample
            has at least this many elements (or an unknown size) are
            recomputed in the backward pass instead of kept (2^22: 16 MB of
            float32 per tap).
        all_taps_max_elements: maps whose k^2 samples have at most this many
            elements in all (2^21: 8 MB of float32) sample every tap at once;
            larger or unknown sizes one tap at a time.
    """

    def __init__(self, filters, kernel_size=3, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 recompute_min_elements=2 ** 22, all_taps_max_elements=2 ** 21, **kwargs):
        super().__init__(**kwargs)
        if kernel_size % 2 != 1:
            raise ValueError(f"DeformableConv2D takes an odd kernel_size; got {kernel_size}.")
        self.filters = filters
        self.kernel_size = kernel_size
        self.use_bias = use_bias
        self.recompute_min_elements = recompute_min_elements
        self.all_taps_max_elements = all_taps_max_elements
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.offset_conv = keras.layers.Conv2D(
            2 * kernel_size * kernel_size, kernel_size, padding="same",
            kernel_initializer="zeros", bias_initializer="zeros", name="offset_conv")

    def build(self, input_shape):
        channels = input_shape[-1]
        self.kernel = self.add_weight(
            name="kernel", shape=(self.kernel_size, self.kernel_size, channels, self.filters),
            initializer=self.kernel_initializer)
        self.bias = (self.add_weight(name="bias", shape=(self.filters,),
                                     initializer=self.bias_initializer)
                     if self.use_bias else None)
        self.offset_conv.build(input_shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def call(self, inputs, training=None):
        k2 = self.kernel_size * self.kernel_size
        channels = inputs.shape[-1]
        shape = tf.shape(inputs)
        batch, height, width = shape[0], shape[1], shape[2]
        # Offsets [B, H, W, k^2, (dy, dx)].
        offsets = tf.reshape(ops.cast(self.offset_conv(inputs), "float32"),
                             [batch, height, width, k2, 2])
        half = self.kernel_size // 2
        taps = [divmod(t, self.kernel_size) for t in range(k2)]
        tap_y = tf.constant([ty - half for ty, _ in taps], tf.float32)
        tap_x = tf.constant([tx - half for _, tx in taps], tf.float32)
        rows = tf.cast(tf.range(height), tf.float32)[None, :, None, None]
        cols = tf.cast(tf.range(width), tf.float32)[None, None, :, None]
        batch_offsets = (tf.range(batch) * height * width)[:, None, None, None]
        # The corners of every tap at once, without channels: [4, B, H, W, k^2(, 1)].
        corner_rows, corner_weights = bilinear_corners(
            batch_offsets, height, width,
            rows + tap_y + offsets[..., 0], cols + tap_x + offsets[..., 1])
        flat = tf.reshape(inputs, [-1, channels])
        kernel = ops.cast(self.kernel, inputs.dtype)
        sample_size = inputs.shape.num_elements()
        if sample_size is not None and k2 * sample_size <= self.all_taps_max_elements:
            # Every tap at once: [B * H * W, k^2 * C] columns, tap-major like
            # the kernel's [k, k, C, O] rows.
            sampled = bilinear_sample(flat, corner_rows, corner_weights)
            outputs = tf.matmul(
                tf.reshape(tf.cast(sampled, kernel.dtype), [-1, k2 * channels]),
                tf.reshape(kernel, [k2 * channels, self.filters]))
        else:
            outputs = 0
            for t in range(k2):
                # The rows are integers: captured, not arguments, of the recomputation.
                def tap(flat, weights, tap_kernel, tap_rows=corner_rows[..., t]):
                    sampled = bilinear_sample(flat, tap_rows, weights)
                    return tf.matmul(tf.reshape(tf.cast(sampled, tap_kernel.dtype),
                                                [-1, channels]), tap_kernel)
                if training and (sample_size is None
                                 or sample_size >= self.recompute_min_elements):
                    tap = tf.recompute_grad(tap)
                outputs += tap(flat, corner_weights[..., t, :], kernel[taps[t]])
        outputs = tf.reshape(outputs, [batch, height, width, self.filters])
        if self.use_bias:
            outputs = outputs + ops.cast(self.bias, outputs.dtype)
        return outputs

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=self.kernel_size,
                      use_bias=self.use_bias,
                      recompute_min_elements=self.recompute_min_elements,
                      all_taps_max_elements=self.all_taps_max_elements,
                      kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
                      bias_initializer=keras.initializers.serialize(self.bias_initializer))
        return config
