"""scripts/predict.py end to end: a tiny random model's directory -> COCO and
Cityscapes panoptic files that equal in-process predictions and evaluate;
the test-time augmentation, post-processing and crop flags; photos (EXIF
orientation, unreadable files, overlays) from the model directory and from
its exported SavedModel; one-line errors."""
import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from deeplab2 import common
from deeplab2.evaluation import coco_format
from deeplab2.evaluation.coco_evaluation import evaluate_coco_panoptic
from deeplab2.evaluation.prediction_writer import output_paths, read_predictions
from deeplab2.model.meta import CONFIG_FILE

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[2]
# Subprocess runs of the script, each compiling the post-processing: minutes.
pytestmark = pytest.mark.slow
# The slim model of tests/training/tiny.gin.
TINY = dict(dataset="synthetic", crop_size=(65, 97), backbone="mobilenet_v3_small",
            output_stride=32, semantic_aspp_channels=16, semantic_decoder_channels=16,
            semantic_low_level_channels=(8, 8), semantic_head_channels=16,
            instance_aspp_channels=16, instance_decoder_channels=8,
            instance_low_level_channels=(8, 8), instance_head_channels=8)
# Flags of the second run and the Predictor / pipeline options they stand for.
TTA_FLAGS = ("--scales=0.75,1", "--flip", "--postprocess=nms_kernel=3",
             "--postprocess=center_threshold=0.05", "--crop_size=97,129")
TTA_OPTIONS = dict(scales=(0.75, 1.0), flip=True,
                   postprocess={"nms_kernel": 3, "center_threshold": 0.05})
TTA_CROP = (97, 129)


def _save(model, directory, step):
    from deeplab2.model import model_dir

    checkpoint = tf.train.Checkpoint(**{model_dir.CHECKPOINT_MODEL_KEY: model,
                                        model_dir.CHECKPOINT_STEP_KEY: tf.Variable(
                                            step, dtype=tf.int64)})
    return checkpoint.save(os.path.join(directory, "ckpt"))


def _predict_in_process(predictor, pattern, crop_size=None):
    """({image id: panoptic map}, {image id: ground truth}) of the records."""
    from deeplab2.data import pipeline

    predictions, labels = {}, {}
    predict = predictor.batch_function()
    for batch in pipeline.evaluation_dataset(pattern, predictor.config, global_batch_size=1,
                                             crop_size=crop_size):
        height = int(batch[common.IMAGE_HEIGHT][0])
        width = int(batch[common.IMAGE_WIDTH][0])
        image_id = batch[common.IMAGE_ID][0].numpy().decode()
        panoptic = predict(batch)[common.PANOPTIC].numpy()
        predictions[image_id] = panoptic[0, :height, :width]
        labels[image_id] = batch[common.PANOPTIC_LABEL][0, :height, :width].numpy()
    return predictions, labels


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A dict: records (pattern of 2 synthetic val scenes), model_dir (config and
    a step-3 checkpoint), other_checkpoint (a model of other widths), expected
    and expected_tta ({image id: in-process panoptic map} plain and with
    TTA_OPTIONS / TTA_CROP), labels ({image id: ground truth})."""
    from deeplab2.data.converters.synthetic import convert_synthetic
    from deeplab2.inference import Predictor
    from deeplab2.model import build_model, model_dir

    root = tmp_path_factory.mktemp("predict")
    convert_synthetic(str(root / "records"), num_train=0, num_val=2, seed=0, height=64,
                      width=96, num_workers=1)
    records = str(root / "records" / "val-*.tfrecord")
    # Seeded: the tests need predictions with several segments, which not every
    # random model gives; unseeded, the weights depended on the tests run before.
    keras.utils.set_random_seed(0)
    model = build_model(**TINY)
    for variable in model.trainable_variables:  # not the script's own init
        variable.assign(variable * 1.5)
    directory = str(root / "model")
    model_dir.write_model_config(directory, model.model_config)
    _save(model, directory, step=3)
    expected, labels = _predict_in_process(Predictor(model), records)
    expected_tta, _ = _predict_in_process(Predictor(model, **TTA_OPTIONS), records, TTA_CROP)
    other = build_model(**dict(TINY, semantic_head_channels=24))
    other_checkpoint = _save(other, str(root / "other"), step=1)
    return dict(records=records, model_dir=directory, other_checkpoint=other_checkpoint,
                expected=expected, expected_tta=expected_tta, labels=labels)


def run_script(output_dir, *args):
    command = [sys.executable, str(PROJECT_ROOT / "scripts" / "predict.py"),
               f"--output_dir={output_dir}", *args]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(command, capture_output=True, text=True, env=env,
                          cwd=PROJECT_ROOT, timeout=300)


def run_predict(output_dir, model_dir, file_pattern, *args):
    return run_script(output_dir, f"--model_dir={model_dir}",
                      f"--file_pattern={file_pattern}", *args)


def _read(output_dir, fmt, info):
    return read_predictions(*output_paths(str(output_dir), fmt), info)


def _assert_maps_equal(maps, expected):
    assert maps.keys() == expected.keys()
    for image_id, panoptic in expected.items():
        np.testing.assert_array_equal(maps[image_id], panoptic, err_msg=image_id)


def _error_line(result):
    """The one `error:` line of a failed run (no traceback)."""
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr[-3000:]
    return lines[0]


def test_predict_writes_both_formats_and_pictures(setup, tmp_path):
    from deeplab2.data.dataset_info import get_dataset_info

    info = get_dataset_info("synthetic")
    result = run_predict(tmp_path, setup["model_dir"], setup["records"], "--format=both",
                         "--num_pictures=1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Predicted 2 images" in result.stdout and "(step 3)" in result.stdout
    assert [p.name for p in (tmp_path / "pictures").iterdir()] == ["00000_val_000000.png"]
    for fmt in ("coco", "cityscapes"):
        _assert_maps_equal(_read(tmp_path, fmt, info), setup["expected"])
    data = json.loads(open(output_paths(str(tmp_path), "cityscapes")[0]).read())
    assert sorted(a["file_name"] for a in data["annotations"]) == [
        "val_000000_panoptic.png", "val_000001_panoptic.png"]

    (tmp_path / "gt").mkdir()
    annotations = [coco_format.write_panoptic(str(tmp_path / "gt" / f"{k}.png"), label,
                                              info, k, groundtruth=True)
                   for k, label in setup["labels"].items()]
    (tmp_path / "gt.json").write_text(json.dumps(
        {"annotations": annotations, "categories": coco_format.categories(info)}))
    scores = evaluate_coco_panoptic(str(tmp_path / "gt.json"), str(tmp_path / "gt"),
                                    *output_paths(str(tmp_path), "coco"))
    assert scores["num_images"] == 2


def test_tta_postprocess_and_crop_flags_reach_the_predictor(setup, tmp_path):
    from deeplab2.data.dataset_info import get_dataset_info

    result = run_predict(tmp_path, setup["model_dir"], setup["records"], *TTA_FLAGS)
    assert result.returncode == 0, result.stderr[-3000:]
    maps = _read(tmp_path, "coco", get_dataset_info("synthetic"))
    _assert_maps_equal(maps, setup["expected_tta"])
    # The options change the predictions: a script ignoring them fails above.
    assert any(not np.array_equal(setup["expected"][k], v)
               for k, v in setup["expected_tta"].items())


def test_model_dir_without_config_fails_clearly(setup, tmp_path):
    result = run_predict(tmp_path / "out", tmp_path, setup["records"])
    line = _error_line(result)
    assert str(tmp_path / CONFIG_FILE) in line and "not found" in line


def test_missing_checkpoint_fails_clearly(setup, tmp_path):
    from deeplab2.model import model_dir

    config_only = tmp_path / "model"
    model_dir.write_model_config(str(config_only),
                                 model_dir.read_model_config(setup["model_dir"]))
    line = _error_line(run_predict(tmp_path / "out", config_only, setup["records"]))
    assert line == f"error: no checkpoint in {config_only}."


def test_checkpoint_of_another_architecture_fails_clearly(setup, tmp_path):
    checkpoint = setup["other_checkpoint"]
    line = _error_line(run_predict(tmp_path / "out", setup["model_dir"], setup["records"],
                                   f"--checkpoint={checkpoint}"))
    assert line.startswith(f"error: checkpoint {checkpoint} does not fit")


def test_file_pattern_matching_nothing_fails_clearly(setup, tmp_path):
    line = _error_line(run_predict(tmp_path / "out", setup["model_dir"],
                                   f"{tmp_path}/none-*"))
    assert f"{tmp_path}/none-*' matches no file" in line


def _scene(height, width, seed):
    """An RGB picture of a few flat rectangles on a gradient."""
    rng = np.random.RandomState(seed)
    image = np.zeros((height, width, 3), np.float64)
    image += np.linspace(0, 120, width)[None, :, None]
    for _ in range(4):
        top, left = rng.randint(0, height - 16), rng.randint(0, width - 16)
        image[top:top + rng.randint(12, 40), left:left + rng.randint(12, 50)] = \
            rng.randint(0, 255, 3)
    return image.astype(np.uint8)


@pytest.fixture(scope="module")
def photos(setup, tmp_path_factory):
    """A dict: folder (a.jpg, b.png stored 64x48 with EXIF orientation 6,
    broken.jpg of garbage bytes, notes.txt), other (a.png: a second "a"),
    images (the --images flag value: folder and a glob of other), saved_model
    (the exported model), expected ({output name: Predictor.predict_image
    panoptic map of the upright photo}), upright ({output name: photo}), model."""
    from PIL import Image, ImageOps

    from deeplab2.export import export_saved_model
    from deeplab2.inference import Predictor
    from deeplab2.model import load_model

    root = tmp_path_factory.mktemp("photos")
    folder, other = root / "photos", root / "other"
    folder.mkdir()
    other.mkdir()
    # Sizes the model pads alike (65 x 65): one compilation of the post-processing.
    Image.fromarray(_scene(60, 64, 0)).save(folder / "a.jpg", quality=90)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    Image.fromarray(_scene(64, 48, 1)).save(folder / "b.png", exif=exif.tobytes())
    (folder / "broken.jpg").write_bytes(b"not a JPEG at all")
    (folder / "notes.txt").write_text("not a photo")
    Image.fromarray(_scene(40, 56, 2)).save(other / "a.png")

    predictor = Predictor(load_model(setup["model_dir"]))
    upright, expected = {}, {}
    for name, path in (("a", folder / "a.jpg"), ("b", folder / "b.png"),
                       ("a_2", other / "a.png")):
        with Image.open(path) as image:
            upright[name] = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
        expected[name] = predictor.predict_image(upright[name])[common.PANOPTIC].numpy()
    saved_model = root / "saved_model"
    export_saved_model(predictor, str(saved_model))
    return dict(folder=folder, images=f"{folder},{other}/*.png", saved_model=saved_model,
                expected=expected, upright=upright, model=predictor.model)


@pytest.fixture(scope="module")
def model_dir_photos(setup, photos, tmp_path_factory):
    """(output folder, completed run) of the photos predicted from the model directory."""
    output = tmp_path_factory.mktemp("photo_predictions")
    result = run_script(output, f"--model_dir={setup['model_dir']}",
                        f"--images={photos['images']}", "--format=both")
    return output, result


def _assert_photo_run(result, photos):
    assert result.returncode == 0, result.stderr[-3000:]
    skipped = [line for line in result.stderr.splitlines() if "skipped" in line]
    assert skipped == [f"skipped {photos['folder'] / 'broken.jpg'}: not an image file "
                       "(unknown format)"]
    assert "Predicted 3 photos (1 skipped: unreadable) with " in result.stdout
    assert "predict  4/4 [" in result.stderr  # the progress bar


def test_photos_from_model_dir(setup, photos, model_dir_photos):
    from PIL import Image

    from deeplab2.data.dataset_info import get_dataset_info
    from deeplab2.vis import colorize_panoptic, overlay

    output, result = model_dir_photos
    _assert_photo_run(result, photos)
    assert "(step 3)" in result.stdout
    info = get_dataset_info("synthetic")
    expected = photos["expected"]
    assert expected["b"].shape == (48, 64)  # upright, not as stored
    assert all(len(np.unique(panoptic)) > 1 for panoptic in expected.values())
    for fmt in ("coco", "cityscapes"):
        _assert_maps_equal(_read(output, fmt, info), expected)
    for name, photo in photos["upright"].items():
        picture = np.asarray(Image.open(output / "overlays" / f"{name}.png"))
        np.testing.assert_array_equal(
            picture, overlay(photo, colorize_panoptic(expected[name], info)), err_msg=name)
    assert sorted(p.name for p in (output / "overlays").iterdir()) == [
        "a.png", "a_2.png", "b.png"]


def test_photos_from_saved_model_equal_model_dir(photos, model_dir_photos, tmp_path):
    expected_dir, _ = model_dir_photos
    # The SavedModel records its dataset (assets.extra/deeplab2_metadata.json).
    result = run_script(tmp_path, f"--saved_model={photos['saved_model']}",
                        f"--images={photos['images']}", "--format=both")
    _assert_photo_run(result, photos)
    assert f"with {photos['saved_model']};" in result.stdout
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(str(p.relative_to(expected_dir))
                             for p in expected_dir.rglob("*") if p.is_file())
    assert "panoptic_val/b.png" in written and "overlays/a_2.png" in written
    for name in written:
        assert (tmp_path / name).read_bytes() == (expected_dir / name).read_bytes(), name


def test_photos_from_tflite_and_onnx_files_equal_model_dir(setup, photos, model_dir_photos,
                                                           tmp_path):
    """The network files at 65x65, the size the model directory pads every
    photo to: the same panoptic maps and overlays; a file of the other format
    or not exported by deeplab2 is refused in one line."""
    from deeplab2.data.dataset_info import get_dataset_info
    from deeplab2.export import onnx as onnx_export, tflite as tflite_export

    expected_dir, _ = model_dir_photos
    info = get_dataset_info("synthetic")
    tflite_path, onnx_path = tmp_path / "model.tflite", tmp_path / "model.onnx"
    tflite_export.export_tflite(photos["model"], str(tflite_path), (65, 65))
    onnx_export.export_onnx(photos["model"], str(onnx_path), (65, 65))
    for flag, path in (("tflite", tflite_path), ("onnx", onnx_path)):
        output = tmp_path / flag
        result = run_script(output, f"--{flag}={path}", f"--images={photos['images']}",
                            "--format=both")
        _assert_photo_run(result, photos)
        for fmt in ("coco", "cityscapes"):
            _assert_maps_equal(_read(output, fmt, info), photos["expected"])
        for name in ("a", "a_2", "b"):
            picture = f"overlays/{name}.png"
            assert (output / picture).read_bytes() == (expected_dir / picture).read_bytes()
    line = _error_line(run_script(tmp_path / "x", f"--tflite={onnx_path}",
                                  f"--images={photos['folder']}"))
    assert line == (f"error: --tflite {onnx_path} holds a onnx network; pass it as --onnx.")
    not_a_model = tmp_path / "notes.onnx"
    not_a_model.write_bytes(b"not an ONNX model")
    line = _error_line(run_script(tmp_path / "x", f"--onnx={not_a_model}",
                                  f"--images={photos['folder']}"))
    assert line.startswith(f"error: --onnx: {not_a_model}"), line


def test_fit_size_flag_reaches_the_predictor(setup, photos, tmp_path):
    from deeplab2.data.dataset_info import get_dataset_info
    from deeplab2.inference import Predictor

    photo = photos["upright"]["b"]
    expected = Predictor(photos["model"], fit_size=(33, 65)).predict_image(photo)
    result = run_script(tmp_path, f"--model_dir={setup['model_dir']}",
                        f"--images={photos['folder'] / 'b.png'}", "--fit_size=33,65")
    assert result.returncode == 0, result.stderr[-3000:]
    maps = _read(tmp_path, "coco", get_dataset_info("synthetic"))
    _assert_maps_equal(maps, {"b": expected[common.PANOPTIC].numpy()})
    assert not np.array_equal(maps["b"], photos["expected"]["b"])


@pytest.mark.parametrize("args, message", [
    (("--images=x.jpg", "--file_pattern=x"),
     "error: give exactly one of --images and --file_pattern."),
    (("--images=x.jpg",),
     "error: give exactly one of --model_dir, --saved_model, --tflite and --onnx."),
    (("--images=x.jpg", "--model_dir=x", "--onnx=x.onnx"),
     "error: give exactly one of --model_dir, --saved_model, --tflite and --onnx."),
    (("--images=x.jpg", "--tflite=x.tflite", "--dataset=synthetic"),
     "error: --dataset applies to --saved_model only (the tflite file has its dataset built "
     "in)."),
    (("--images=x.jpg", "--onnx=x.onnx", "--fit_size=33,65"),
     "error: --fit_size applies to --model_dir only (the onnx file has its input size built "
     "in)."),
    (("--file_pattern=x", "--onnx=x.onnx"),
     "error: --onnx predicts --images only; predict TFRecords from --model_dir."),
    (("--images=x.jpg", "--saved_model=x", "--dataset=synthetic", "--flip"),
     "error: --flip applies to --model_dir only (an exported model has it built in)."),
])
def test_bad_flag_combinations_fail_clearly(tmp_path, args, message):
    assert _error_line(run_script(tmp_path, *args)) == message


def test_photo_errors_fail_clearly(setup, photos, tmp_path):
    line = _error_line(run_script(tmp_path, f"--saved_model={tmp_path}",
                                  f"--images={photos['folder']}"))
    assert line == (f"error: --dataset: {tmp_path}/assets.extra/deeplab2_metadata.json not "
                    f"found: {tmp_path} is not a SavedModel exported by deeplab2's "
                    "scripts/export_model.py (or by an older version). Pass --dataset, the "
                    "model's dataset or its model directory.")
    line = _error_line(run_script(tmp_path, f"--model_dir={setup['model_dir']}",
                                  f"--images={tmp_path}/none-*.jpg"))
    assert line == f"error: --images: '{tmp_path}/none-*.jpg' matches no file."
    line = _error_line(run_script(tmp_path, f"--saved_model={photos['saved_model']}",
                                  "--dataset=synthetic", f"--images={photos['folder']}",
                                  "--fit_size=33,65"))
    assert line == (f"error: --fit_size: the signature of {photos['saved_model']} takes "
                    "no fit size; predict from --model_dir to use it.")
