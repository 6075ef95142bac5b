"""Per-pixel losses reduced to one value per image, as Panoptic-DeepLab does.

Every loss returns a [batch] vector: for each image, the sum of its weighted
per-pixel losses (optionally only the top-k hardest) divided by the number of
those pixels whose weighted loss is non-zero (0 when there is none, e.g. an
image with no instances or only ignore pixels). The trainer averages these over
the global batch, which keeps the loss correct under tf.distribute.
"""
import tensorflow as tf


def weighted_top_k_mean(per_pixel_loss: tf.Tensor, top_k_percent: float = 1.0) -> tf.Tensor:
    """Reduces [B, ...] weighted pixel losses to [B] per-image losses.

    Keeps the round(`top_k_percent` * pixels) largest losses of each image (at
    least one), then divides their sum by how many of them are non-zero.
    """
    if not 0.0 < top_k_percent <= 1.0:
        raise ValueError(f"top_k_percent must be in (0, 1], got {top_k_percent}.")
    flat = tf.reshape(per_pixel_loss, [tf.shape(per_pixel_loss)[0], -1])
    if top_k_percent < 1.0:
        num_pixels = tf.shape(flat)[1]
        k = tf.cast(tf.math.round(top_k_percent * tf.cast(num_pixels, tf.float32)), tf.int32)
        k = tf.maximum(k, 1)
        flat, _ = tf.math.top_k(flat, k=k, sorted=False)
    total = tf.reduce_sum(flat, axis=1)
    num_nonzero = tf.math.count_nonzero(flat, axis=1, dtype=flat.dtype)
    return tf.math.divide_no_nan(total, num_nonzero)


class WeightedBootstrappedCrossEntropy:
    """Softmax cross-entropy times per-pixel weights, averaged over the hardest pixels.

    Pixels labeled `ignore_label` get zero weight whatever `weights` says.
    """

    def __init__(self, ignore_label: int, top_k_percent: float = 0.2):
        self.ignore_label = ignore_label
        self.top_k_percent = top_k_percent

    def __call__(self, labels, logits, weights):
        """labels [B,H,W] int, logits [B,H,W,C], weights [B,H,W] -> [B]."""
        labels = tf.cast(labels, tf.int32)
        valid = tf.not_equal(labels, self.ignore_label)
        safe_labels = tf.where(valid, labels, tf.zeros_like(labels))
        cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=safe_labels, logits=tf.cast(logits, tf.float32))
        weights = tf.cast(weights, tf.float32) * tf.cast(valid, tf.float32)
        return weighted_top_k_mean(cross_entropy * weights, self.top_k_percent)


class CenterHeatmapMSE:
    """Squared error between predicted and target center heatmaps, weighted per pixel."""

    def __call__(self, target, prediction, weights):
        """target [B,H,W] (or [B,H,W,1]), prediction [B,H,W,1], weights [B,H,W] -> [B]."""
        prediction = tf.reshape(tf.cast(prediction, tf.float32), tf.shape(weights))
        target = tf.reshape(tf.cast(target, tf.float32), tf.shape(weights))
        return weighted_top_k_mean(tf.square(prediction - target) * tf.cast(weights, tf.float32))


class OffsetL1:
    """Absolute error of the (y, x) offsets, averaged over the two channels, weighted per pixel."""

    def __call__(self, target, prediction, weights):
        """target, prediction [B,H,W,2]; weights [B,H,W] -> [B]."""
        error = tf.reduce_mean(
            tf.abs(tf.cast(prediction, tf.float32) - tf.cast(target, tf.float32)), axis=-1)
        return weighted_top_k_mean(error * tf.cast(weights, tf.float32))
