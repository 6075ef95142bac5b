"""FPN anchors for a padded image size, in the order the RPN outputs are flattened.

Level l (P2..P6) has stride s_l = 2**l and anchor size 32 * 2**(l - 2). Its
feature map has ceil(H / s_l) x ceil(W / s_l) positions (P6 is a stride-2,
1x1 max-pool of P5, which rounds up). At each position (i, j) there is one
anchor per ratio r = h / w, centred at (j * s_l, i * s_l) (offset 0), with
w = sqrt(size**2 / r) and h = r * w; anchors crossing the image border are kept.

Sizes are Python ints or, for a model traced with an unknown image size,
int32 scalar tensors (the anchors are then computed when the graph runs).

Order: level, then row i, then column j, then ratio, the last the fastest. An
RPN level output of shape [B, h, w, A] (logits) or [B, h, w, 4 * A] (deltas,
channel 4 * a + k) reshaped to [B, h * w * A] or [B, h * w * A, 4] and
concatenated over levels lines up with `fpn_anchors`.
"""
import dataclasses
import math
from typing import List, Sequence, Tuple

import tensorflow as tf

STRIDES = (4, 8, 16, 32, 64)
SIZES = (32.0, 64.0, 128.0, 256.0, 512.0)
RATIOS = (0.5, 1.0, 2.0)


def grid_size(image_height, image_width, stride: int) -> Tuple:
    """(rows, columns) of the feature map of a level of `stride` (ints or tensors)."""
    return -(-image_height // stride), -(-image_width // stride)


def anchor_counts(image_height: int, image_width: int, strides: Sequence[int] = STRIDES,
                  num_ratios: int = len(RATIOS)) -> Tuple[int, ...]:
    """Number of anchors of each level, to split flattened RPN outputs with tf.split."""
    counts = []
    for stride in strides:
        rows, columns = grid_size(image_height, image_width, stride)
        counts.append(rows * columns * num_ratios)
    return tuple(counts)


def level_anchors(rows, columns, stride: int, size: float,
                  ratios: Sequence[float] = RATIOS) -> tf.Tensor:
    """[rows * columns * len(ratios), 4] float32 anchors of one level.

    In (row, column, ratio) order; `size` is the side of the ratio-1 anchor;
    `rows` and `columns` are ints or scalar tensors.
    """
    half_widths = [0.5 * math.sqrt(size * size / ratio) for ratio in ratios]
    half_sizes = tf.constant([[w, ratio * w] for w, ratio in zip(half_widths, ratios)],
                             tf.float32)
    centre_x = tf.range(columns, dtype=tf.float32) * stride
    centre_y = tf.range(rows, dtype=tf.float32) * stride
    centres = tf.stack([tf.tile(centre_x[None, :], [rows, 1]),
                        tf.tile(centre_y[:, None], [1, columns])], axis=-1)
    centres = centres[:, :, None, :]
    anchors = tf.concat([centres - half_sizes, centres + half_sizes], axis=-1)
    return tf.reshape(anchors, [-1, 4])


def fpn_level_anchors(image_height, image_width, strides: Sequence[int] = STRIDES,
                      sizes: Sequence[float] = SIZES,
                      ratios: Sequence[float] = RATIOS) -> List[tf.Tensor]:
    """Per level, lowest first, the [anchor_counts[l], 4] float32 anchors of a
    padded image size (ints or scalar tensors)."""
    return [level_anchors(*grid_size(image_height, image_width, stride), stride, size, ratios)
            for stride, size in zip(strides, sizes)]


def fpn_anchors(image_height: int, image_width: int, strides: Sequence[int] = STRIDES,
                sizes: Sequence[float] = SIZES, ratios: Sequence[float] = RATIOS) -> tf.Tensor:
    """[sum of `anchor_counts`, 4] float32 anchors of all levels of a padded image size."""
    return tf.concat(fpn_level_anchors(image_height, image_width, strides, sizes, ratios),
                     axis=0)


@dataclasses.dataclass(frozen=True)
class AnchorSet:
    """The anchors of a pyramid P2, P3, ...: one size per level (lowest first,
    level 2 + i at stride 4 * 2**i) and the ratios h / w shared by all levels.

    The default is the standard set (SPEC section 1); Seamless on Vistas has
    six levels of size 2 * stride and ratios (0.2, 0.5, 1, 2, 5) (section 4).
    """
    sizes: Tuple[float, ...] = SIZES
    ratios: Tuple[float, ...] = RATIOS

    def __post_init__(self):
        if not self.sizes or not self.ratios or min(self.sizes) <= 0 or min(self.ratios) <= 0:
            raise ValueError(f"anchor sizes and ratios must be non-empty and positive, got "
                             f"sizes {self.sizes} and ratios {self.ratios}.")
        object.__setattr__(self, "sizes", tuple(float(size) for size in self.sizes))
        object.__setattr__(self, "ratios", tuple(float(ratio) for ratio in self.ratios))

    @property
    def strides(self) -> Tuple[int, ...]:
        return tuple(4 * 2 ** i for i in range(len(self.sizes)))

    @property
    def num_ratios(self) -> int:
        return len(self.ratios)

    def level_anchors(self, image_height, image_width) -> List[tf.Tensor]:
        """`fpn_level_anchors` of this set."""
        return fpn_level_anchors(image_height, image_width, self.strides, self.sizes,
                                 self.ratios)

    def anchors(self, image_height, image_width) -> tf.Tensor:
        """`fpn_anchors` of this set."""
        return fpn_anchors(image_height, image_width, self.strides, self.sizes, self.ratios)


STANDARD_ANCHORS = AnchorSet()
