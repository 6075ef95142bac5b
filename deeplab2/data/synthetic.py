"""The built-in synthetic dataset: street-like scenes generated on the fly.

Each scene is deterministic in (seed, split, index) and takes a few
milliseconds, so tests and the quickstart need no download. Scenes are not
trivial: three textured stuff classes (sky, building, ground), three thing
classes (disc, box, triangle) from tiny to large that overlap and occlude each
other, an occasional crowd group, and ignore pixels (an ego-vehicle band at the
bottom and unlabeled blobs). Labels use the "synthetic" descriptor of
deeplab2.data.dataset_info: panoptic id = class * 1000 + instance.
"""
import dataclasses
from typing import List, Tuple

import numpy as np

from deeplab2.data.dataset_info import get_dataset_info

DEFAULT_HEIGHT = 192
DEFAULT_WIDTH = 256
SPLITS = ("train", "val")

SKY, BUILDING, GROUND, DISC, BOX, TRIANGLE = range(6)
_THING_CLASSES = (DISC, BOX, TRIANGLE)
_MIN_VISIBLE_AREA = 16  # instances occluded below this become unlabeled


@dataclasses.dataclass(frozen=True)
class Segment:
    """One labeled segment of a scene."""
    id: int  # panoptic id: class * label_divisor + instance (0 for stuff/crowd)
    category: int
    is_crowd: bool
    area: int


@dataclasses.dataclass(frozen=True)
class Scene:
    image: np.ndarray  # uint8 HxWx3
    panoptic: np.ndarray  # int32 HxW
    segments: Tuple[Segment, ...]


def _rng(seed: int, split: str, index: int) -> np.random.Generator:
    if split not in SPLITS:
        raise ValueError(f"Unknown synthetic split {split!r}; expected one of {SPLITS}.")
    if index < 0:
        raise ValueError(f"Scene index must be >= 0, got {index}.")
    return np.random.default_rng([seed, SPLITS.index(split), index])


def _shape_mask(kind: int, yy: np.ndarray, xx: np.ndarray, cy: float, cx: float,
                size: float, aspect: float) -> np.ndarray:
    """Boolean mask of a disc, box or upward triangle of the given size."""
    half_h = size / 2
    half_w = size * aspect / 2
    if kind == DISC:
        return ((yy - cy) / half_h) ** 2 + ((xx - cx) / half_w) ** 2 <= 1.0
    if kind == BOX:
        return (np.abs(yy - cy) <= half_h) & (np.abs(xx - cx) <= half_w)
    # Triangle: apex at the top, base at the bottom.
    depth = (yy - (cy - half_h)) / size  # 0 at the apex, 1 at the base
    return (depth >= 0) & (depth <= 1) & (np.abs(xx - cx) <= depth * half_w)


def _stuff_layout(rng, yy, xx, height, width) -> np.ndarray:
    """Class map of sky, buildings and ground with a wavy horizon."""
    horizon = (rng.uniform(0.3, 0.55) * height
               + rng.uniform(2, 0.05 * height) * np.sin(xx * rng.uniform(0.02, 0.06)
                                                       + rng.uniform(0, 2 * np.pi)))
    classes = np.where(yy < horizon, SKY, GROUND)
    for _ in range(rng.integers(1, 4)):
        x0 = rng.uniform(-0.1, 0.8) * width
        x1 = x0 + rng.uniform(0.15, 0.45) * width
        top = rng.uniform(0.05, 0.3) * height
        inside = (xx >= x0) & (xx < x1) & (yy >= top) & (yy < horizon)
        classes[inside] = BUILDING
    return classes


def _stuff_texture(rng, classes, yy, xx) -> np.ndarray:
    """Float RGB image: sky gradient, buildings with window grids, striped ground."""
    height = classes.shape[0]
    image = np.zeros(classes.shape + (3,), np.float32)
    sky = np.stack([90 + 80 * yy / height, 150 + 50 * yy / height,
                    220 + 15 * yy / height], axis=-1)
    period = rng.integers(7, 12)
    windows = ((yy % period) < period // 2) & ((xx % period) < period // 2)
    gray = rng.uniform(95, 140)
    building = np.stack([gray - 35 * windows, gray - 35 * windows,
                         gray - 20 * windows], axis=-1)
    stripes = 18 * np.sin(0.7 * yy + 0.25 * xx)
    ground = np.stack([135 + stripes, 100 + stripes, 60 + 0.5 * stripes], axis=-1)
    for cls, texture in ((SKY, sky), (BUILDING, building), (GROUND, ground)):
        image[classes == cls] = texture[classes == cls]
    return image


def _thing_color(rng, cls, yy, xx, cy, cx, size) -> np.ndarray:
    """Class color jittered per instance, with shading from the top-left."""
    base = np.array(get_dataset_info("synthetic").colors[cls], np.float32)
    base = base + rng.uniform(-25, 25, size=3)
    shade = 1.0 - 0.35 * np.clip(((yy - cy) + (xx - cx)) / (size + 1e-6) + 0.5, 0, 1)
    return base[None, None, :] * shade[..., None]


def generate_scene(seed: int, split: str, index: int, height: int = DEFAULT_HEIGHT,
                   width: int = DEFAULT_WIDTH) -> Scene:
    """Generates scene `index` of `split` ("train" or "val") for `seed`."""
    if height < 32 or width < 32:
        raise ValueError(f"Synthetic scenes need at least 32x32 pixels, got {height}x{width}.")
    info = get_dataset_info("synthetic")
    rng = _rng(seed, split, index)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)

    classes = _stuff_layout(rng, yy, xx, height, width)
    image = _stuff_texture(rng, classes, yy, xx)
    # Owner of each thing pixel: index into `things` (-1 = no thing).
    owner = np.full((height, width), -1, np.int32)
    things: List[Tuple[int, bool]] = []  # (class, is_crowd)

    num_things = int(rng.integers(4, 12))
    crowd_at = int(rng.integers(0, num_things)) if rng.random() < 0.35 else -1
    min_side = min(height, width)
    for i in range(num_things):
        if i == crowd_at:
            cls = int(rng.choice(_THING_CLASSES))
            gy, gx = rng.uniform(0.3, 0.9) * height, rng.uniform(0.1, 0.9) * width
            for _ in range(int(rng.integers(4, 8))):
                size = rng.uniform(5, 11)
                cy, cx = gy + rng.normal(0, 8), gx + rng.normal(0, 12)
                mask = _shape_mask(cls, yy, xx, cy, cx, size, rng.uniform(0.7, 1.4))
                owner[mask] = len(things)
                image[mask] = _thing_color(rng, cls, yy, xx, cy, cx, size)[mask]
            things.append((cls, True))
        cls = int(rng.choice(_THING_CLASSES))
        size = float(np.exp(rng.uniform(np.log(8), np.log(0.55 * min_side))))
        cy = rng.uniform(0.15, 0.95) * height
        cx = rng.uniform(0.0, 1.0) * width
        mask = _shape_mask(cls, yy, xx, cy, cx, size, rng.uniform(0.6, 1.6))
        owner[mask] = len(things)
        image[mask] = _thing_color(rng, cls, yy, xx, cy, cx, size)[mask]
        things.append((cls, False))

    ignore = np.zeros((height, width), bool)
    if rng.random() < 0.5:  # ego-vehicle band at the bottom
        band_top = height * (1 - rng.uniform(0.05, 0.12)) + 3 * np.sin(xx * 0.05)
        ignore |= yy >= band_top
        image[ignore] = 30 + 10 * np.sin(0.3 * xx[ignore])[:, None]
    if rng.random() < 0.3:  # an unlabeled blob
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(4, 12)
        blob = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        ignore |= blob
        image[blob] = rng.uniform(0, 255, size=(int(blob.sum()), 3))

    image += rng.normal(0, 4, size=image.shape)
    panoptic = classes.astype(np.int32) * info.label_divisor
    segments: List[Segment] = []
    next_instance = {cls: 1 for cls in _THING_CLASSES}
    for k, (cls, is_crowd) in enumerate(things):
        mask = (owner == k) & ~ignore
        area = int(mask.sum())
        if area == 0:
            continue
        if not is_crowd and area < _MIN_VISIBLE_AREA:
            ignore |= mask  # a sliver of an occluded instance: leave it unlabeled
            continue
        instance = 0 if is_crowd else next_instance[cls]
        next_instance[cls] += 0 if is_crowd else 1
        panoptic[mask] = cls * info.label_divisor + instance
        segments.append(Segment(cls * info.label_divisor + instance, cls, is_crowd, area))
    panoptic[ignore] = info.ignore_panoptic_id
    stuff_segments = []
    for cls in (SKY, BUILDING, GROUND):
        area = int((panoptic == cls * info.label_divisor).sum())
        if area:
            stuff_segments.append(Segment(cls * info.label_divisor, cls, False, area))
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return Scene(image=image, panoptic=panoptic, segments=tuple(stuff_segments + segments))
