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
batch renormalization, a channel axis other than the last of a 4-D input,
float64, and batch statistics synchronized over more than one replica (the
fused kernel cannot all-reduce them).
"""
import keras
import tensorflow as tf

_FUSED_DTYPES = (tf.float16, tf.bfloat16, tf.float32)


@keras.saving.register_keras_serializable(package="deeplab2")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` trained by the fused kernel where it applies."""

    def _fused_applies(self, inputs, mask) -> bool:
        if mask is not None or self.renorm or len(inputs.shape) != 4:
            return False
        if self.axis not in (-1, 3) or tf.as_dtype(self.compute_dtype) not in _FUSED_DTYPES:
            return False
        if self.synchronized:
            context = tf.distribute.get_replica_context()
            if context is not None and context.num_replicas_in_sync > 1:
                return False
        return True

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
        outputs, mean, unbiased_variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
            x=x, scale=scale, offset=offset, mean=empty, variance=empty,
            epsilon=self.epsilon, exponential_avg_factor=1.0, data_format="NHWC",
            is_training=True)
        # The kernel normalizes by the biased variance but returns the unbiased
        # one; Keras's moving average takes the biased one.
        count = tf.cast(tf.reduce_prod(tf.shape(x)[:3]), tf.float32)
        variance = unbiased_variance * tf.math.divide_no_nan(count - 1.0, count)
        momentum = self.momentum
        self.moving_mean.assign(self.moving_mean * momentum + mean * (1.0 - momentum))
        self.moving_variance.assign(
            self.moving_variance * momentum + variance * (1.0 - momentum))
        return outputs
