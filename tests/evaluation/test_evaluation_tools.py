"""The PNG pixel reader, the evaluate script and the evaluation benchmark."""
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import PROJECT_ROOT, shared_subdir
from deeplab2.benchmarks import evaluation as benchmark
from deeplab2.evaluation import coco_format, pixel_words


@pytest.mark.parametrize("in_place", [True, False])
def test_rgb_words_hold_the_ids_with_or_without_arrow(tmp_path, monkeypatch,
                                                      in_place):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 1 << 24, (17, 23))
    coco_format.write_panoptic_png(str(tmp_path / "a.png"), ids)
    if in_place:
        with Image.open(tmp_path / "a.png") as image:
            image.load()
            words = pixel_words._arrow_words(image)
        assert words is not None and not words.flags.writeable
    else:
        monkeypatch.setattr(pixel_words, "_arrow_words", lambda image: None)
    np.testing.assert_array_equal(
        coco_format.read_panoptic_png(str(tmp_path / "a.png")), ids)


def test_rgba_png_ignores_alpha(tmp_path):
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 0] = 7
    rgba[1, 2, :3] = (1, 2, 3)
    rgba[..., 3] = 128
    Image.fromarray(rgba).save(tmp_path / "a.png")
    ids = coco_format.read_panoptic_png(str(tmp_path / "a.png"))
    assert ids[0, 0] == 7 and ids[1, 2] == 1 + 2 * 256 + 3 * 65536


def test_evaluate_script_writes_json_and_reports_errors(shared_data, tmp_path):
    folder = shared_subdir(shared_data, "coco_panoptic")
    gt = ["--gt_json", str(folder / "panoptic_examples.json"),
          "--gt_dir", str(folder / "panoptic")]
    script = str(PROJECT_ROOT / "scripts" / "evaluate.py")
    out = tmp_path / "metrics.json"
    done = subprocess.run(
        [sys.executable, script, *gt, "--pred_json", gt[1], "--pred_dir", gt[3],
         "--json_out", str(out)], capture_output=True, text=True, check=True)
    assert "All" in done.stdout and "mIoU 100.00" in done.stdout
    result = json.loads(out.read_text())
    assert result["All"] == {"pq": 1.0, "sq": 1.0, "rq": 1.0, "n": 8}
    assert set(result) >= {"Things", "Stuff", "per_class", "pq_dagger", "miou"}
    failed = subprocess.run(
        [sys.executable, script, *gt, "--pred_json", gt[1], "--pred_dir",
         str(tmp_path)], capture_output=True, text=True)
    assert failed.returncode == 1 and "error: missing PNG file" in failed.stderr
    into_a_folder = subprocess.run(
        [sys.executable, script, *gt, "--pred_json", gt[1], "--pred_dir", gt[3],
         "--json_out", str(tmp_path)], capture_output=True, text=True)
    assert into_a_folder.returncode == 1
    assert into_a_folder.stderr.strip().splitlines() == [
        f"error: --json_out {tmp_path} is a folder; expected a file name"]


def test_benchmark_reports_identical_numbers(capsys):
    assert benchmark.main(["--images", "2", "--repeats", "1", "--height", "96",
                           "--width", "192"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["ms_per_image"]) >= {"ours_files_1_workers",
                                           "ours_in_memory", "hotcoco"}
    assert all(d <= 1e-9 for d in report["max_abs_difference"].values())
