"""Pictures of the examples stored in TFRecord files (scripts/visualize.py)."""
import itertools
import os
import re
from typing import Dict, Iterable, Iterator, List, Optional

import numpy as np
import tensorflow as tf

from deeplab2 import common
from deeplab2.data import tfrecord
from deeplab2.data.dataset_info import DatasetInfo
from deeplab2.vis.layout import save_png
from deeplab2.vis.panels import render_panels


def read_examples(file_pattern: str) -> Iterator[Dict[str, np.ndarray]]:
    """Yields the decoded examples of the files matching `file_pattern`, as numpy,
    files in sorted order."""
    files = sorted(tf.io.gfile.glob(file_pattern))
    if not files:
        raise FileNotFoundError(f"No TFRecord files match {file_pattern!r}.")
    dataset = tf.data.TFRecordDataset(files).map(tfrecord.decode_example)
    yield from dataset.as_numpy_iterator()


def _file_stem(index: int, image_id) -> str:
    """`00007_<image id>`, with characters unsafe in file names replaced."""
    if isinstance(image_id, bytes):
        image_id = image_id.decode("utf-8", "replace")
    safe_id = re.sub(r"[^A-Za-z0-9._-]+", "_", str(image_id)).strip("._")
    return f"{index:05d}_{safe_id}" if safe_id else f"{index:05d}"


def write_pictures(examples: Iterable[Dict[str, np.ndarray]], info: DatasetInfo,
                   output_dir: str, max_examples: Optional[int] = None) -> List[str]:
    """Writes one PNG per example (ground truth over the image and its semantic
    map) to `output_dir` and returns their paths."""
    paths = []
    for index, example in enumerate(itertools.islice(examples, max_examples)):
        label = np.asarray(example[common.PANOPTIC_LABEL])
        picture = render_panels(example[common.IMAGE], dataset_info=info,
                                gt_panoptic=label,
                                semantic=label // info.label_divisor)
        stem = _file_stem(index, example.get(common.IMAGE_ID, ""))
        path = os.path.join(output_dir, stem + ".png")
        save_png(path, picture)
        paths.append(path)
    return paths
