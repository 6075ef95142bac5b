"""Heatmap and offset colors."""
import colorsys

import numpy as np
import pytest

from deeplab2.vis import colorize_heatmap, colorize_offsets


def _luminance(rgb):
    return rgb.astype(float) @ np.array([0.299, 0.587, 0.114])


def test_heatmap_brightness_rises_with_value_and_clips():
    values = np.linspace(-0.5, 1.5, 201)[None, :]
    rgb = colorize_heatmap(values)
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 201, 3)
    luminance = _luminance(rgb[0])
    inside = (values[0] >= 0) & (values[0] <= 1)
    assert (np.diff(luminance[inside]) >= 0).all()
    assert luminance[inside][-1] - luminance[inside][0] > 200
    assert (rgb[0, values[0] <= 0] == rgb[0, 0]).all()
    assert (rgb[0, values[0] >= 1] == rgb[0, -1]).all()


def test_heatmap_accepts_a_channel_axis():
    heatmap = np.random.default_rng(0).random((5, 7, 1))
    assert (colorize_heatmap(heatmap) == colorize_heatmap(heatmap[..., 0])).all()


def _hue(pixel):
    return colorsys.rgb_to_hsv(*(pixel / 255.0))[0]


@pytest.mark.parametrize("direction", [(0, 1), (1, 0), (1, 1), (-2, 1), (3, -7)])
def test_opposite_offsets_get_opposite_hues(direction):
    offset = np.array([[direction, [-v for v in direction]]], np.float64)
    rgb = colorize_offsets(offset)
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 2, 3)
    difference = abs(_hue(rgb[0, 0]) - _hue(rgb[0, 1]))
    assert abs(difference - 0.5) < 0.01


def test_zero_offset_is_white_and_saturation_grows_with_length():
    offset = np.zeros((1, 4, 2))
    offset[0, 1:, 1] = [1, 2, 4]
    rgb = colorize_offsets(offset)
    assert tuple(rgb[0, 0]) == (255, 255, 255)
    saturation = [colorsys.rgb_to_hsv(*(p / 255.0))[1] for p in rgb[0]]
    assert saturation == sorted(saturation) and saturation[-1] == 1.0
    assert (colorize_offsets(np.zeros((3, 3, 2))) == 255).all()


def test_max_magnitude_sets_full_saturation():
    offset = np.zeros((1, 1, 2))
    offset[0, 0] = (0, 5)
    weak = colorize_offsets(offset, max_magnitude=10.0)
    assert colorsys.rgb_to_hsv(*(weak[0, 0] / 255.0))[1] == pytest.approx(0.5, abs=0.01)


def test_offsets_must_have_two_channels():
    with pytest.raises(ValueError, match="HxWx2"):
        colorize_offsets(np.zeros((4, 4)))
