"""Batch norm whose training pass is TensorFlow's fused kernel.

Keras 3's `BatchNormalization` computes training statistics and the
normalization from elementary ops (casts, squares, sums, broadcast products)
and differentiates them op by op: on this project's CPU those took about a
quarter of a ResNet-50 Panoptic-DeepLab training step, more in bfloat16 where
every map is also cast to float32 and back. `FusedBatchNormalization` keeps
Keras's layer (the same variables, arguments, inference pass and moving
averages) and trains through `FusedBatchNormV3` and its gradient, one kernel
each way, which reads bfloat16 maps directly and accumulates in float32.

It falls back to Keras's pass where the fused kernel does not apply: masks,
batch renormalization, an input that is not 4-D or whose channel axis is not
the last, float64, and a synchronized layer on more than one replica (the
fused kernel cannot all-reduce its statistics). In that last case the
statistics are all-reduced in two passes (the mean, then the squared
deviations from it), as the fused kernel computes them on one replica;
Keras's one-pass E[x^2] - E[x]^2 loses most digits of a channel whose
variance is small against its mean.
"""
import keras
import tensorflow as tf

_FUSED_DTYPES = (tf.float16, tf.bfloat16, tf.float32)


def _replicas_in_sync() -> int:
    context = tf.distribute.get_replica_context()
    return 1 if context is None else context.num_replicas_in_sync


@keras.saving.register_keras_serializable(package="deeplab2")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` trained by the fused kernel where it applies."""

    def _fused_applies(self, inputs, mask) -> bool:
        if mask is not None or self.renorm or len(inputs.shape) != 4:
            return False
        if self.axis not in (-1, 3) or tf.as_dtype(self.compute_dtype) not in _FUSED_DTYPES:
            return False
        return not (self.synchronized and _replicas_in_sync() > 1)

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable and self._fused_applies(inputs, mask)):
            return super().call(inputs, training=training, mask=mask)
        x = tf.cast(inputs, self.compute_dtype)
        channels = x.shape[-1]
        scale = (tf.cast(self.gamma, tf.float32) if self.scale
                 else tf.ones([channels], tf.float32))
        offset = (tf.cast(self.beta, tf.float32) if self.center
                  else tf.zeros([channels], tf.float32))
        empty = tf.constant([], tf.float32)
        # The raw op, not tf.nn.fused_batch_norm, which raises epsilon to 1.001e-5
        # (an old cuDNN floor): Keras's layer takes its epsilon as given.
        outputs, mean, unbiased_variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
            x=x, scale=scale, offset=offset, mean=empty, variance=empty,
            epsilon=self.epsilon, exponential_avg_factor=1.0, data_format="NHWC",
            is_training=True)
        # The kernel normalizes by the biased variance but returns the unbiased
        # one; Keras's moving average takes the biased one. An empty batch has
        # NaN statistics in the kernel and zeros in Keras's layer.
        count = tf.cast(tf.reduce_prod(tf.shape(x)[:3]), tf.float32)
        variance = unbiased_variance * tf.math.divide_no_nan(count - 1.0, count)
        mean = tf.where(count > 0, mean, 0.0)
        variance = tf.where(count > 0, variance, 0.0)
        momentum = self.momentum
        self.moving_mean.assign(self.moving_mean * momentum + mean * (1.0 - momentum))
        self.moving_variance.assign(
            self.moving_variance * momentum + variance * (1.0 - momentum))
        return outputs

    def _moments(self, inputs, mask):
        if mask is not None or not self.synchronized or _replicas_in_sync() == 1:
            return super()._moments(inputs, mask)
        context = tf.distribute.get_replica_context()
        axes = self._reduction_axes
        count = tf.cast(tf.reduce_prod(tf.gather(tf.shape(inputs), axes)), inputs.dtype)
        count = context.all_reduce(tf.distribute.ReduceOp.SUM, count)
        total = context.all_reduce(tf.distribute.ReduceOp.SUM,
                                   tf.reduce_sum(inputs, axes, keepdims=True))
        mean = tf.math.divide_no_nan(total, count)
        squares = context.all_reduce(tf.distribute.ReduceOp.SUM,
                                     tf.reduce_sum(tf.square(inputs - mean), axes))
        return tf.squeeze(mean, axes), tf.math.divide_no_nan(squares, count)
