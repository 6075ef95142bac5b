"""Pictures of TFRecord examples, and the scripts/visualize.py entry point."""
import io
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from deeplab2 import common
from deeplab2.data.dataset_info import get_dataset_info

tf = pytest.importorskip("tensorflow")
from deeplab2.data import tfrecord  # noqa: E402
from deeplab2.vis import records  # noqa: E402

INFO = get_dataset_info("cityscapes")
ROOT = pathlib.Path(__file__).resolve().parents[2]


def _write_records(path, count=3):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for i in range(count):
            image = np.full((8, 12, 3), 40 * i, np.uint8)
            png = io.BytesIO()
            Image.fromarray(image).save(png, format="PNG")
            segment_map = np.zeros((8, 12), np.int32)
            segment_map[:, 6:] = 1
            writer.write(tfrecord.encode_example(
                png.getvalue(), "png", segment_map, [0, 11 * 1000 + 1], [0, 0],
                image_id=f"city/img_{i}", filename=f"img_{i}.png"))


def test_write_pictures_names_files_by_index_and_id(tmp_path):
    examples = [{common.IMAGE: np.zeros((8, 12, 3), np.uint8),
                 common.PANOPTIC_LABEL: np.full((8, 12), 13001, np.int32),
                 common.IMAGE_ID: b"frankfurt/000294"}] * 2
    paths = records.write_pictures(examples, INFO, str(tmp_path), max_examples=1)
    assert [pathlib.Path(p).name for p in paths] == ["00000_frankfurt_000294.png"]
    assert Image.open(paths[0]).mode == "RGB"


def test_read_examples_and_missing_files(tmp_path):
    _write_records(tmp_path / "a.tfrecord")
    examples = list(records.read_examples(str(tmp_path / "*.tfrecord")))
    assert len(examples) == 3
    assert examples[2][common.PANOPTIC_LABEL][0, 11] == 11001
    with pytest.raises(FileNotFoundError):
        next(records.read_examples(str(tmp_path / "none-*")))


def test_visualize_script(tmp_path):
    _write_records(tmp_path / "val-00000-of-00001.tfrecord")
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "visualize.py"),
         f"--tfrecord_pattern={tmp_path}/val-*", "--dataset=cityscapes",
         f"--output_dir={out}", "--max_examples=2"],
        capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["00000_city_img_0.png",
                                                     "00001_city_img_1.png"]
