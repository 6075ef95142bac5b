"""The built-in synthetic dataset (deeplab2.data.synthetic) -> TFRecords.

Scenes are generated in the workers; images are stored as PNG.
"""
import functools
import io
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from PIL import Image

from deeplab2.data import synthetic
from deeplab2.data.converters.common import (ConversionError, ExampleStats, SourceImage,
                                             serialize)
from deeplab2.data.converters.writer import write_split
from deeplab2.data.dataset_info import get_dataset_info


def convert_scene(item: Tuple[str, int], seed: int, height: int,
                  width: int) -> Tuple[bytes, ExampleStats]:
    """Generates scene (split, index) and serializes it."""
    split, index = item
    name = f"{split}_{index:06d}"
    scene = synthetic.generate_scene(seed, split, index, height, width)
    buffer = io.BytesIO()
    Image.fromarray(scene.image).save(buffer, format="PNG")
    image = SourceImage(buffer.getvalue(), "png", height, width)

    ids = [s.id for s in scene.segments]
    crowd = [int(s.is_crowd) for s in scene.segments]
    index_of = {segment_id: i for i, segment_id in enumerate(ids)}
    if len(index_of) != len(ids):
        raise ConversionError(f"synthetic scene {name}: segments share a panoptic id")
    values, inverse = np.unique(scene.panoptic.ravel(), return_inverse=True)
    ignore_id = get_dataset_info("synthetic").ignore_panoptic_id
    if ignore_id in values and ignore_id not in index_of:
        index_of[ignore_id] = len(ids)
        ids.append(ignore_id)
        crowd.append(0)
    unlisted = [v for v in values.tolist() if v not in index_of]
    if unlisted:
        raise ConversionError(f"synthetic scene {name}: panoptic ids {unlisted} have no "
                              "segment")
    lut = np.array([index_of[v] for v in values.tolist()], np.int64)
    segment_map = lut[inverse].reshape(scene.panoptic.shape)
    return serialize(image, segment_map, ids, crowd, name, name + ".png", ignore_id)


def convert_synthetic(output_dir: str, num_train: int, num_val: int, seed: int,
                      num_shards: Optional[int] = None, num_workers: Optional[int] = None,
                      height: int = synthetic.DEFAULT_HEIGHT,
                      width: int = synthetic.DEFAULT_WIDTH,
                      shard_bytes: Optional[int] = None) -> List[Dict[str, Any]]:
    """Writes `num_train` train and `num_val` val scenes; returns the split summaries.

    A split with 0 scenes is skipped. The summaries record seed and size, so a
    caller can tell whether an existing dataset is the one it asks for. Shards
    are sized by bytes unless `num_shards` is given (see write_split).
    """
    if num_train < 0 or num_val < 0 or num_train + num_val == 0:
        raise ValueError(f"Need non-negative scene counts, not both 0; got num_train="
                         f"{num_train}, num_val={num_val}.")
    convert = functools.partial(convert_scene, seed=seed, height=height, width=width)
    return [write_split([(split, i) for i in range(count)], convert, output_dir, split,
                        "synthetic", num_shards=num_shards, num_workers=num_workers,
                        metadata={"seed": seed, "height": height, "width": width},
                        shard_bytes=shard_bytes)
            for split, count in (("train", num_train), ("val", num_val)) if count]
