"""scripts/benchmark.py bfloat16: float32 against bfloat16 predictions of a tiny model
directory on the tiny synthetic records and a photo."""
import json
import pathlib
import sys

import numpy as np
import pytest
from PIL import Image

from deeplab2.benchmarks import bfloat16
from deeplab2.model import model_dir

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "export"))
from network_export_testing import tiny_model  # noqa: E402


def test_reports_agreement_pq_change_and_speed(tiny_records, tmp_path, capsys):
    model = tiny_model()
    model(np.zeros((1, 65, 97, 3), np.float32))
    model_dir.write_model_dir(model, str(tmp_path / "model"))
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 70, 3), np.uint8)).save(photo)
    assert bfloat16.main(["--model_dir", str(tmp_path / "model"),
                          "--pattern", f"{tiny_records}/val-*.tfrecord", "--image", str(photo),
                          "--fit_size", "65", "97", "--repeats", "1", "--warmup", "0"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["images"] == 3 and report["split"]["images"] == 2
    assert 0.5 < report["semantic_agreement"] <= 1
    split = report["split"]
    assert split["pq_change"] == pytest.approx(split["bfloat16"]["pq"] - split["float32"]["pq"],
                                               abs=0.011)
    assert report["network_input"] == [65, 97]
    assert report["speedup"] == pytest.approx(
        report["network_ms"]["float32"] / report["network_ms"]["bfloat16"], rel=0.02)


def test_needs_images_and_names_a_bad_photo(tmp_path):
    with pytest.raises(SystemExit):
        bfloat16.main(["--model_dir", str(tmp_path)])
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(SystemExit, match="bad.png: not a readable image"):
        bfloat16._examples(bfloat16._parse(["--model_dir", str(tmp_path), "--image",
                                            str(tmp_path / "bad.png")]))
