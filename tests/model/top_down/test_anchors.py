"""FPN anchors vs hand-worked anchors and a numpy loop in the documented order."""
import math

import numpy as np
import pytest
import tensorflow as tf

from deeplab2.model.top_down import anchors


def _numpy_anchors(height, width):
    """Loops over (level, row, column, ratio), the documented order, in float64."""
    result = []
    for level in range(2, 7):
        stride, size = 2 ** level, 32 * 2 ** (level - 2)
        for row in range(math.ceil(height / stride)):
            for column in range(math.ceil(width / stride)):
                for ratio in (0.5, 1.0, 2.0):
                    w = math.sqrt(size * size / ratio)
                    h = ratio * w
                    cx, cy = column * stride, row * stride
                    result.append((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
    return np.array(result)


def test_counts_per_level_of_a_64_by_96_image():
    # P2 16 x 24, P3 8 x 12, P4 4 x 6, P5 2 x 3, P6 1 x 2 positions, 3 ratios each
    assert anchors.anchor_counts(64, 96) == (1152, 288, 72, 18, 6)
    assert anchors.fpn_anchors(64, 96).shape == (1536, 4)


def test_hand_worked_anchors():
    all_anchors = anchors.fpn_anchors(64, 96).numpy()
    half = math.sqrt(2048) / 2  # P2, ratio 0.5: w = sqrt(32^2 / 0.5), h = w / 2
    expected = {
        1: (-16, -16, 16, 16),  # P2 (0, 0), ratio 1
        0: (-half, -half / 2, half, half / 2),  # P2 (0, 0), ratio 0.5
        2: (-half / 2, -half, half / 2, half),  # P2 (0, 0), ratio 2
        4: (-12, -16, 20, 16),  # P2 (0, 1), ratio 1: centre (4, 0)
        24 * 3 + 1: (-16, -12, 16, 20),  # P2 (1, 0), ratio 1: centre (0, 4)
        1152 + 1: (-32, -32, 32, 32),  # P3 (0, 0), ratio 1
        1152 + (12 + 2) * 3 + 1: (-16, -24, 48, 40),  # P3 (1, 2), ratio 1: centre (16, 8)
        # P6 (0, 1), ratio 2: centre (64, 0), w = 512 / sqrt(2), h = 512 sqrt(2)
        1535: (64 - 128 * math.sqrt(2), -256 * math.sqrt(2), 64 + 128 * math.sqrt(2),
               256 * math.sqrt(2)),
    }
    for index, box in expected.items():
        np.testing.assert_allclose(all_anchors[index], box, atol=1e-4, err_msg=str(index))


@pytest.mark.parametrize("height, width", [(64, 96), (96, 160), (100, 70)])
def test_matches_numpy_loop(height, width):
    np.testing.assert_allclose(anchors.fpn_anchors(height, width).numpy(),
                               _numpy_anchors(height, width), atol=1e-4)


def test_ratio_is_height_over_width_and_area_is_size_squared():
    all_anchors = anchors.fpn_anchors(64, 96).numpy().astype(np.float64)
    width = all_anchors[:, 2] - all_anchors[:, 0]
    height = all_anchors[:, 3] - all_anchors[:, 1]
    np.testing.assert_allclose(height / width, np.tile([0.5, 1, 2], 512), rtol=1e-5)
    sizes = np.repeat(anchors.SIZES, anchors.anchor_counts(64, 96))
    np.testing.assert_allclose(width * height, sizes ** 2, rtol=1e-5)


def test_lines_up_with_flattened_rpn_outputs():
    """A fake RPN output holding each anchor's (centre x, centre y, ratio index)
    in its channels, flattened as documented, equals the anchors' own values."""
    height, width = 64, 96
    flat = []
    for stride in anchors.STRIDES:
        rows, columns = anchors.grid_size(height, width, stride)
        y, x, ratio = np.meshgrid(np.arange(rows), np.arange(columns), np.arange(3),
                                  indexing="ij")
        # channel 4 * a + k, as an RPN delta output [1, h, w, 4 * A]
        output = np.stack([x * stride, y * stride, ratio, ratio], axis=-1).reshape(
            1, rows, columns, 12)
        flat.append(tf.reshape(output, [1, -1, 4]))
    flat = tf.concat(flat, axis=1)[0].numpy()
    all_anchors = anchors.fpn_anchors(height, width).numpy()
    centres = (all_anchors[:, :2] + all_anchors[:, 2:]) / 2
    np.testing.assert_allclose(centres, flat[:, :2], atol=1e-4)
    ratio_index = np.log2((all_anchors[:, 3] - all_anchors[:, 1])
                          / (all_anchors[:, 2] - all_anchors[:, 0])) + 1
    np.testing.assert_allclose(ratio_index, flat[:, 2], atol=1e-4)


def test_compiles_with_xla():
    compiled = tf.function(lambda: anchors.fpn_anchors(96, 160), jit_compile=True)
    result = compiled()
    assert result.dtype == tf.float32 and result.shape == (sum(anchors.anchor_counts(96, 160)), 4)
    np.testing.assert_array_equal(result.numpy(), anchors.fpn_anchors(96, 160).numpy())


def test_sizes_unknown_when_tracing_give_the_same_anchors():
    # An exported model traces any image size: the anchors come from tensor sizes.
    traced = tf.function(lambda height, width: anchors.fpn_level_anchors(height, width),
                         input_signature=[tf.TensorSpec([], tf.int32)] * 2)
    levels = traced(tf.constant(64), tf.constant(96))
    assert [level.shape[0] for level in levels] == list(anchors.anchor_counts(64, 96))
    np.testing.assert_array_equal(np.concatenate(levels), anchors.fpn_anchors(64, 96).numpy())


def test_an_anchor_set_is_per_level_sizes_and_shared_ratios():
    standard = anchors.AnchorSet()
    assert standard == anchors.STANDARD_ANCHORS and standard.strides == (4, 8, 16, 32, 64)
    np.testing.assert_array_equal(standard.anchors(64, 96), anchors.fpn_anchors(64, 96))
    vistas = anchors.AnchorSet((8, 16, 32, 64, 128, 256), (0.2, 0.5, 1, 2, 5))
    assert vistas.strides == (4, 8, 16, 32, 64, 128) and vistas.num_ratios == 5
    levels = vistas.level_anchors(64, 96)
    assert [len(level) for level in levels] == list(
        anchors.anchor_counts(64, 96, vistas.strides, num_ratios=5))
    # Each ratio's anchor keeps the level's area: w * h = size**2.
    widths = levels[5][:, 2] - levels[5][:, 0]
    heights = levels[5][:, 3] - levels[5][:, 1]
    np.testing.assert_allclose(widths * heights, 256.0 ** 2, rtol=1e-5)
    np.testing.assert_allclose(heights[:5] / widths[:5], [0.2, 0.5, 1, 2, 5], rtol=1e-5)
    with pytest.raises(ValueError, match="non-empty and positive"):
        anchors.AnchorSet((32, 0))
