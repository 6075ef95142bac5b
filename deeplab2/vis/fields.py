"""Colors for dense model outputs: the center heatmap and the (y, x) offsets."""
from typing import Optional

import numpy as np

# A perceptual colormap (near black -> purple -> red -> orange -> pale yellow):
# its luminance rises monotonically, so brighter always means a higher value.
_HEATMAP_STOPS = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
_HEATMAP_COLORS = np.array([
    (0, 0, 4),
    (87, 16, 110),
    (188, 55, 84),
    (249, 142, 9),
    (252, 255, 164),
], np.float64)


def _squeeze_channel(field: np.ndarray) -> np.ndarray:
    """Drops a trailing channel of size 1 (HxWx1 model output -> HxW)."""
    return field[..., 0] if field.ndim == 3 and field.shape[-1] == 1 else field


def colorize_heatmap(heatmap) -> np.ndarray:
    """HxW (or HxWx1) values, clipped to [0, 1] -> HxWx3 uint8 RGB."""
    values = np.clip(_squeeze_channel(np.asarray(heatmap, np.float64)), 0.0, 1.0)
    channels = [np.interp(values, _HEATMAP_STOPS, _HEATMAP_COLORS[:, c])
                for c in range(3)]
    return np.round(np.stack(channels, axis=-1)).astype(np.uint8)


def hsv_to_rgb(hue, saturation, value) -> np.ndarray:
    """Vectorized HSV (each in [0, 1], hue in turns) -> float RGB in [0, 1]."""
    hue = np.asarray(hue, np.float64)
    saturation = np.asarray(saturation, np.float64)
    value = np.asarray(value, np.float64)
    channels = []
    for n in (5.0, 3.0, 1.0):  # R, G, B
        k = np.mod(n + hue * 6.0, 6.0)
        ramp = np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
        channels.append(value - value * saturation * ramp)
    return np.stack(channels, axis=-1)


def colorize_offsets(offset, max_magnitude: Optional[float] = None) -> np.ndarray:
    """HxWx2 (y, x) offsets -> HxWx3 uint8 flow colors.

    Hue is the direction, atan2(y, x) in image coordinates (x right, y down):
    opposite offsets get opposite hues. Saturation is the length divided by
    `max_magnitude` (default: the longest offset of the map), so zero offsets
    are white and the longest ones fully saturated.
    """
    offset = np.asarray(offset, np.float64)
    if offset.ndim != 3 or offset.shape[-1] != 2:
        raise ValueError(f"offsets must be HxWx2 (y, x), got shape {offset.shape}")
    dy, dx = offset[..., 0], offset[..., 1]
    magnitude = np.hypot(dy, dx)
    if max_magnitude is None:
        max_magnitude = float(magnitude.max(initial=0.0))
    saturation = np.clip(magnitude / max(max_magnitude, 1e-6), 0.0, 1.0)
    hue = np.mod(np.arctan2(dy, dx) / (2 * np.pi), 1.0)
    rgb = hsv_to_rgb(hue, saturation, np.ones_like(hue))
    return np.round(rgb * 255.0).astype(np.uint8)
