"""scripts/predict.py end to end: a tiny random model's checkpoint -> COCO and
Cityscapes panoptic files that equal in-process predictions and evaluate."""
import json
import os
import pathlib
import subprocess
import sys

import gin
import numpy as np
import pytest
import tensorflow as tf

from deeplab2 import common
from deeplab2.data.dataset_info import get_dataset_info
from deeplab2.evaluation import coco_format
from deeplab2.evaluation.coco_evaluation import evaluate_coco_panoptic
from deeplab2.evaluation.prediction_writer import output_paths, read_predictions

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[2]
TINY_GIN = PROJECT_ROOT / "tests" / "training" / "tiny.gin"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(records dir, checkpoint dir, {image id: in-process panoptic map},
    {image id: ground-truth panoptic map}) of 2 synthetic val scenes."""
    from deeplab2.data.converters.synthetic import convert_synthetic
    from deeplab2.inference import build_predictor
    from deeplab2.training.experiment import Experiment
    from deeplab2.training.config import parse_gin

    root = tmp_path_factory.mktemp("predict")
    convert_synthetic(str(root), num_train=0, num_val=2, seed=0, height=64, width=96,
                      num_workers=1)
    gin.clear_config()
    try:
        parse_gin([str(TINY_GIN)],
                  [f"Experiment.eval_file_pattern = '{root}/val-*.tfrecord'"])
        experiment = Experiment(str(root))
        model = experiment.build_model()
        for variable in model.trainable_variables:  # not the script's own init
            variable.assign(variable * 1.5)
        tf.train.Checkpoint(model=model, step=tf.Variable(3, dtype=tf.int64)).save(
            str(root / "ckpt" / "ckpt"))
        predictor = build_predictor(model, experiment.info)
        expected, labels = {}, {}
        for batch in experiment.eval_dataset():
            height = int(batch[common.IMAGE_HEIGHT][0])
            width = int(batch[common.IMAGE_WIDTH][0])
            image_id = batch[common.IMAGE_ID][0].numpy().decode()
            panoptic = predictor(batch[common.IMAGE])[common.PANOPTIC].numpy()
            expected[image_id] = panoptic[0, :height, :width]
            labels[image_id] = batch[common.PANOPTIC_LABEL][0, :height, :width].numpy()
    finally:
        gin.clear_config()
    return root, root / "ckpt", expected, labels


def run_predict(output_dir, checkpoint, *args):
    command = [sys.executable, str(PROJECT_ROOT / "scripts" / "predict.py"),
               f"--gin_config={TINY_GIN}", f"--checkpoint={checkpoint}",
               f"--output_dir={output_dir}", *args]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(command, capture_output=True, text=True, env=env,
                          cwd=PROJECT_ROOT, timeout=300)


def test_predict_writes_both_formats_and_pictures(setup, tmp_path):
    records, checkpoint, expected, labels = setup
    info = get_dataset_info("synthetic")
    result = run_predict(
        tmp_path, checkpoint, "--format=both", "--num_pictures=1",
        f"--gin_bindings=Experiment.eval_file_pattern = '{records}/val-*.tfrecord'")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Predicted 2 images" in result.stdout and "(step 3)" in result.stdout
    assert [p.name for p in (tmp_path / "pictures").iterdir()] == ["00000_val_000000.png"]
    for fmt in ("coco", "cityscapes"):
        pred_json, pred_dir = output_paths(str(tmp_path), fmt)
        maps = read_predictions(pred_json, pred_dir, info)
        assert maps.keys() == expected.keys()
        for image_id, panoptic in expected.items():
            np.testing.assert_array_equal(maps[image_id], panoptic)
    data = json.loads(open(output_paths(str(tmp_path), "cityscapes")[0]).read())
    assert sorted(a["file_name"] for a in data["annotations"]) == [
        "val_000000_panoptic.png", "val_000001_panoptic.png"]

    (tmp_path / "gt").mkdir()
    annotations = [coco_format.write_panoptic(str(tmp_path / "gt" / f"{k}.png"), label,
                                              info, k, groundtruth=True)
                   for k, label in labels.items()]
    (tmp_path / "gt.json").write_text(json.dumps(
        {"annotations": annotations, "categories": coco_format.categories(info)}))
    scores = evaluate_coco_panoptic(str(tmp_path / "gt.json"), str(tmp_path / "gt"),
                                    *output_paths(str(tmp_path), "coco"))
    assert scores["num_images"] == 2


def test_missing_checkpoint_fails_clearly(setup, tmp_path):
    records = setup[0]
    result = run_predict(tmp_path / "out", tmp_path, f"--file_pattern={records}/val-*")
    assert result.returncode == 1
    assert f"error: No checkpoint in {tmp_path}" in result.stderr


def test_file_pattern_matching_nothing_fails_clearly(setup, tmp_path):
    result = run_predict(tmp_path / "out", tmp_path, f"--file_pattern={tmp_path}/none-*")
    assert result.returncode == 1
    assert f"{tmp_path}/none-*' matches no file" in result.stderr
