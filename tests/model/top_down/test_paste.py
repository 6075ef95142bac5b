"""Mask pasting vs a per-pixel numpy grid-sample oracle, and a hand-worked case."""
import numpy as np
import pytest
import tensorflow as tf

from deeplab2.model.top_down import paste

_paste_masks = tf.function(paste.paste_masks, jit_compile=True)
_paste_binary_masks = tf.function(paste.paste_binary_masks, jit_compile=True)

HEIGHT, WIDTH = 20, 24

# Inside, partly outside, sub-pixel (each around one pixel centre), covering the image,
# empty and fully outside boxes.
_BOXES = np.float32([
    [3.2, 2.7, 15.9, 17.4],
    [-6.3, -4.1, 10.5, 9.8],
    [18.2, 12.5, 31.7, 26.0],
    [5.3, 6.2, 5.7, 6.55],
    [10.05, 4.3, 10.95, 4.6],
    [-10.0, -10.0, 40.0, 40.0],
    [3.5, 4.0, 3.5, 10.0],
    [30.0, 30.0, 40.0, 40.0],
])


def reference_paste(masks, boxes, height, width):
    """Each pixel samples its box's mask bilinearly (grid_sample, align_corners=False).

    The sample position u = (x + 0.5 - x0) / (x1 - x0) * M - 0.5 (v likewise) is float32,
    as in detectron2 (a float64 one differs by float32 rounding: up to 3e-6 after
    sampling); the sampling is float64. Cells outside the mask are 0; an empty box
    pastes nothing.
    """
    num, grid = masks.shape[:2]
    result = np.zeros((num, height, width))

    def corners(pixel, start, end):
        f32 = np.float32
        coordinate = (f32(pixel + 0.5) - start) / (end - start) * f32(grid) - f32(0.5)
        low = int(np.floor(coordinate))
        fraction = np.float64(coordinate) - low
        return [(low, 1 - fraction), (low + 1, fraction)]

    for n, (x0, y0, x1, y1) in enumerate(boxes):
        if x1 <= x0 or y1 <= y0:
            continue
        for y in range(height):
            for x in range(width):
                for i, weight_i in corners(y, y0, y1):
                    for j, weight_j in corners(x, x0, x1):
                        if 0 <= i < grid and 0 <= j < grid:
                            result[n, y, x] += weight_i * weight_j * masks[n, i, j]
    return result


def _random_masks(rng, num, grid=28):
    """Sigmoids of smooth random logits: masks with real foreground regions."""
    coarse = rng.normal(0, 4, (num, 4, 4))
    fine = coarse.repeat(grid // 4, axis=1).repeat(grid // 4, axis=2)
    return (1 / (1 + np.exp(-fine - rng.normal(0, 1, fine.shape)))).astype(np.float32)


def _random_boxes(rng, num):
    start = rng.uniform(-8, 26, (num, 2))
    size = rng.choice([0.3, 3.0, 15.0], (num, 1)) * rng.uniform(0.5, 2, (num, 2))
    return np.concatenate([start, start + size], axis=1).astype(np.float32)


@pytest.mark.parametrize("compiled", [False, True])
def test_paste_matches_grid_sample_oracle(compiled):
    rng = np.random.default_rng(int(compiled))
    boxes = np.concatenate([_BOXES, _random_boxes(rng, 12)])
    masks = _random_masks(rng, len(boxes))
    paste_masks, paste_binary = ((_paste_masks, _paste_binary_masks) if compiled
                                 else (paste.paste_masks, paste.paste_binary_masks))
    # 20 masks in chunks of 3: the last chunk is padded.
    result = np.asarray(paste_masks(masks, boxes, HEIGHT, WIDTH, chunk_size=3))
    binary = np.asarray(paste_binary(masks, boxes, HEIGHT, WIDTH, chunk_size=3))
    expected = reference_paste(masks, boxes, HEIGHT, WIDTH)
    assert result.shape == binary.shape == (len(boxes), HEIGHT, WIDTH)
    assert binary.dtype == bool
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(binary, expected >= 0.5)
    # The cases above occur: pixels of every box inside the image are pasted.
    assert np.all(expected[:6].max(axis=(1, 2)) > 0) and np.all(expected[6:8] == 0)
    assert 0 < binary.mean() < 0.5


def test_paste_halves_a_mask_in_a_box_of_half_its_size():
    # Box (0, 0, 14, 14): pixel (y, x) samples u = 2x + 0.5, the mean of cells 2x and 2x + 1.
    mask = np.random.default_rng(2).random((28, 28)).astype(np.float32)
    result = np.asarray(paste.paste_masks(mask[None], np.float32([[0, 0, 14, 14]]), 28, 28))
    expected = np.zeros((28, 28))
    expected[:14, :14] = mask.reshape(14, 2, 14, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(result[0], expected, rtol=0, atol=1e-6)
