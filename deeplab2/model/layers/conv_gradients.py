"""Stride-1 convolutions whose gradients run at the forward pass's rate on CPU.

TensorFlow's CPU gradients of two common convolutions are slow:
- a dilated convolution runs (outside TPUs) as space-to-batch, an ordinary
  convolution on rate^2 x batch small maps and batch-to-space, and its
  Conv2DBackpropInput and Conv2DBackpropFilter on those small maps take
  several times the forward pass (an ASPP branch, 3x3 at rate 9 on a
  17x33x2048 map to 256 channels: forward 40 ms, forward and gradient
  447-482 ms against 123-136 ms here);
- a 1x1 convolution's Conv2DBackpropFilter is slower than the matrix product
  it is (256 -> 64 channels on a 129x257 map, forward and gradient: 60-79 ms
  against 35-42 ms).
Both measured in three runs of `scripts/benchmark.py gradients --cases atrous pointwise`
(an AMD EPYC with AVX2, 2 cores).

Here the forward pass is TensorFlow's own and the gradients are rewritten:
- atrous: the input gradient is itself an atrous convolution, of the output
  gradient with the kernel flipped in space and its channel axes swapped;
  the kernel gradient of tap (i, j) is one matrix product of the input
  shifted by that tap (zero padded) and the output gradient;
- 1x1: both gradients are matrix products.
Values agree with TensorFlow's up to float rounding.
"""
import tensorflow as tf


def atrous_conv2d(inputs, kernel, rate):
    """'same', stride-1 convolution of `inputs` [B, H, W, C] with `kernel`
    [k, k, C, O] (odd k) at dilation `rate`, as `tf.nn.convolution`."""
    size = kernel.shape[0]
    if size % 2 != 1 or kernel.shape[1] != size:
        raise ValueError(f"atrous_conv2d takes a square kernel of odd size; got {kernel.shape}.")

    @tf.custom_gradient
    def convolve(inputs, kernel):
        outputs = tf.nn.convolution(inputs, kernel, padding="SAME", dilations=rate)

        def gradient(output_gradient):
            flipped = tf.transpose(tf.reverse(kernel, [0, 1]), [0, 1, 3, 2])
            input_gradient = tf.nn.convolution(output_gradient, flipped, padding="SAME",
                                               dilations=rate)
            margin = rate * (size // 2)
            padded = tf.pad(inputs, [[0, 0], [margin, margin], [margin, margin], [0, 0]])
            shape = tf.shape(inputs)
            channels, filters = kernel.shape[2], kernel.shape[3]
            flat_gradient = tf.reshape(output_gradient, [-1, filters])
            taps = []
            for i in range(size):
                for j in range(size):
                    shifted = tf.slice(padded, [0, i * rate, j * rate, 0],
                                       [-1, shape[1], shape[2], -1])
                    taps.append(tf.matmul(tf.reshape(shifted, [-1, channels]), flat_gradient,
                                          transpose_a=True))
            return input_gradient, tf.reshape(tf.stack(taps), tf.shape(kernel))

        return outputs, gradient

    return convolve(inputs, kernel)


def pointwise_conv2d(inputs, kernel):
    """1x1 convolution of `inputs` [B, H, W, C] with `kernel` [1, 1, C, O],
    as `tf.nn.convolution`."""
    if tuple(kernel.shape[:2]) != (1, 1):
        raise ValueError(f"pointwise_conv2d takes a 1x1 kernel; got {kernel.shape}.")

    @tf.custom_gradient
    def convolve(inputs, kernel):
        outputs = tf.nn.convolution(inputs, kernel, padding="SAME")

        def gradient(output_gradient):
            channels, filters = kernel.shape[2], kernel.shape[3]
            flat_gradient = tf.reshape(output_gradient, [-1, filters])
            input_gradient = tf.matmul(flat_gradient, tf.reshape(kernel, [channels, filters]),
                                       transpose_b=True)
            kernel_gradient = tf.matmul(tf.reshape(inputs, [-1, channels]), flat_gradient,
                                        transpose_a=True)
            return (tf.reshape(input_gradient, tf.shape(inputs)),
                    tf.reshape(kernel_gradient, tf.shape(kernel)))

        return outputs, gradient

    return convolve(inputs, kernel)
