"""What every converter needs: its error type and checked readers of source files."""
import dataclasses
import io
from typing import List, NamedTuple, Sequence, Tuple

import numpy as np
from PIL import Image

from deeplab2.data.tfrecord import encode_example

# Pillow format name -> the name stored in image/format.
_FORMATS = {"PNG": "png", "JPEG": "jpeg"}


class ConversionError(Exception):
    """A source file is missing or malformed; the message names the file."""


@dataclasses.dataclass(frozen=True)
class SourceImage:
    """An image file's unchanged bytes and what decoding them revealed."""
    data: bytes
    format: str  # "png" or "jpeg"
    height: int
    width: int


class PanopticExample(NamedTuple):
    """An image and its label before serialization: a map of indices into a
    table of segments, as deeplab2.data.tfrecord stores it."""
    image: SourceImage
    segment_map: np.ndarray  # HxW; each pixel indexes the table
    segment_ids: List[int]  # panoptic id of each table entry
    segment_is_crowd: List[int]  # 0/1 per entry


class ExampleStats(NamedTuple):
    """What one converted image adds to the split summary."""
    segments: int  # labeled segments: table entries other than the ignore entry
    label_bytes: int  # serialized example minus the image: segment map, table, metadata
    raw_label_bytes: int  # the same label as raw int32, for the compression ratio


def serialize(image: SourceImage, segment_map: np.ndarray, segment_ids: Sequence[int],
              segment_is_crowd: Sequence[int], image_id: str, filename: str,
              ignore_id: int) -> Tuple[bytes, ExampleStats]:
    """Encodes one example (see deeplab2.data.tfrecord) and measures it;
    `ignore_id` is the panoptic id of ignored pixels, not counted as a segment."""
    serialized = encode_example(image.data, image.format, segment_map, segment_ids,
                                segment_is_crowd, image_id, filename)
    stats = ExampleStats(sum(int(i) != ignore_id for i in segment_ids), len(serialized) - len(image.data),
                         4 * segment_map.size)
    return serialized, stats


def read_image(path: str) -> SourceImage:
    """Reads an image file and decodes it fully, so corrupt files fail here."""
    data, image = _open(path, "image")
    if image.format not in _FORMATS:
        raise ConversionError(f"image {path} is {image.format}; expected PNG or JPEG")
    return SourceImage(data, _FORMATS[image.format], image.height, image.width)


def read_label_png(path: str) -> np.ndarray:
    """Decodes a label PNG to an array (HxW for grayscale, HxWx3 for RGB)."""
    _, label = _open(path, "label")
    if label.format != "PNG":
        raise ConversionError(f"label {path} is {label.format}; expected PNG")
    return np.asarray(label)


def check_same_size(image_path: str, image: SourceImage, label_path: str,
                    label: np.ndarray) -> None:
    """Raises when a label's height and width differ from its image's."""
    if label.shape[:2] != (image.height, image.width):
        raise ConversionError(
            f"size mismatch: label {label_path} is {label.shape[0]}x{label.shape[1]} but "
            f"image {image_path} is {image.height}x{image.width} (HxW)")


def _open(path: str, kind: str) -> Tuple[bytes, Image.Image]:
    """Reads a file and decodes it with Pillow, checking PNG CRCs and every pixel."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConversionError(f"cannot read {kind} {path}: {e}") from None
    try:
        with Image.open(io.BytesIO(data)) as probe:
            probe.verify()  # PNG chunk CRCs
        image = Image.open(io.BytesIO(data))
        image.load()  # full decode: truncated or garbled pixel data
    except Exception as e:  # Pillow raises many types for bad files
        raise ConversionError(f"corrupt {kind} {path}: {e}") from None
    return data, image
