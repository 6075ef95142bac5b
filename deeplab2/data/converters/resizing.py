"""Shrinks a converted example so that its longest side is at most a given size.

For datasets whose images are larger than training and evaluation need (e.g.
Mapillary Vistas, up to 4000x6000, used at a longest side of 2177): the image is
resampled bilinearly and re-encoded in its own format, the label map takes the
nearest source pixel (pixel centers aligned with the image's), so no new ids
appear. A segment none of whose pixels is sampled vanishes: its table entry is
dropped, and the caller learns which entries were dropped so it can report them.
"""
import io
from typing import List, Tuple

import numpy as np
from PIL import Image

from deeplab2.data.converters.common import PanopticExample, SourceImage

JPEG_QUALITY = 95  # of re-encoded JPEGs
_PIL_FORMATS = {"jpeg": "JPEG", "png": "PNG"}


def fitted_size(height: int, width: int, max_side: int) -> Tuple[int, int]:
    """(height, width) scaled so that the longer side is at most `max_side`,
    aspect ratio kept (sides rounded); a smaller size is returned unchanged."""
    if max_side < 1:
        raise ValueError(f"max_side must be >= 1, got {max_side}.")
    scale = max_side / max(height, width)
    if scale >= 1:
        return height, width
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_image(image: SourceImage, height: int, width: int) -> SourceImage:
    """The image resampled bilinearly to height x width (RGB), in its own format."""
    with Image.open(io.BytesIO(image.data)) as decoded:
        resized = decoded.convert("RGB").resize((width, height), Image.BILINEAR)
    buffer = io.BytesIO()
    options = {"quality": JPEG_QUALITY} if image.format == "jpeg" else {}
    resized.save(buffer, format=_PIL_FORMATS[image.format], **options)
    return SourceImage(buffer.getvalue(), image.format, height, width)


def resize_nearest(label: np.ndarray, height: int, width: int) -> np.ndarray:
    """The HxW array sampled at the nearest source pixel of each output pixel center."""
    rows = ((np.arange(height) + 0.5) * label.shape[0] / height).astype(np.int64)
    cols = ((np.arange(width) + 0.5) * label.shape[1] / width).astype(np.int64)
    return label[rows[:, None], cols[None, :]]


def shrink_example(example: PanopticExample,
                   max_side: int) -> Tuple[PanopticExample, List[int]]:
    """The example with its longest side at most `max_side`, and the table
    entries (indices into `example`'s table) that no pixel keeps, which the
    returned example's table leaves out. Small examples are returned as they are."""
    image = example.image
    height, width = fitted_size(image.height, image.width, max_side)
    if (height, width) == (image.height, image.width):
        return example, []
    segment_map = resize_nearest(example.segment_map, height, width)
    num_entries = len(example.segment_ids)
    kept = np.bincount(segment_map.ravel(), minlength=num_entries) > 0
    new_index = np.cumsum(kept) - 1  # position of each kept entry in the new table
    shrunk = PanopticExample(
        resize_image(image, height, width), new_index[segment_map],
        [i for i, keep in zip(example.segment_ids, kept) if keep],
        [c for c, keep in zip(example.segment_is_crowd, kept) if keep])
    return shrunk, np.flatnonzero(~kept).tolist()
