"""UPSNet and Seamless through the trainer, as Panoptic-DeepLab and Panoptic FPN:
trainer.py in its train and train_and_eval modes, resume, evaluation (PQ,
PQ-dagger, mIoU, mask and box AP) with its pictures, scripts/predict.py's
files, and a 2-replica MirroredStrategy step of Seamless, whose synchronized
batch norm is what a second replica changes (UPSNet trains no batch norm by
default; its mirrored loop is the shared TrainLoop, tested with
Panoptic-DeepLab and the toy family in test_distribution.py).

Tiny models (tiny_top_down.gin: MobileNetV3-Small, 16-channel FPN, 64x96
synthetic scenes, 2 steps). Each training step's trace costs ~30-40 s on 2
cores whatever the widths (the Mask R-CNN graph, not the backbone, dominates),
so one straight run per family serves the resume, evaluation and prediction
tests, and one subprocess on 2 logical CPUs runs the distributed checks.
Measured: about 5 minutes on 2 cores (the subprocess 1.6, each family's two
trainer runs 1.4-2, predict.py 0.2-0.3).

Run as a script (`python test_top_down_families_trainer.py RECORDS WORK_DIR`),
this file is that subprocess: it prints the JSON report of `_mirrored_checks`.
"""
import json
import math
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from _trainer_helpers import PROJECT_ROOT, event_scalars, quiet_env, run_trainer
from script_runs import script_report

pytestmark = pytest.mark.slow

TINY_TOP_DOWN_GIN = pathlib.Path(__file__).with_name("tiny_top_down.gin")
FAMILIES = ("upsnet", "seamless")
# Each family's semantic head at a slim width.
SEMANTIC_WIDTH = {"upsnet": "build_model.semantic_dcn_channels = [16]",
                  "seamless": "build_model.semantic_channels = 16"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
STEP_KEY = "step/.ATTRIBUTES/VARIABLE_VALUE"
ITERATIONS_KEY = "optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"


def _train(family, model_dir, records, *bindings, mode="train"):
    result = run_trainer(model_dir, records, SEMANTIC_WIDTH[family],
                         f"build_model.meta_architecture = '{family}'", *bindings,
                         mode=mode, gin=TINY_TOP_DOWN_GIN, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _checkpoint(model_dir, step):
    """{name: value} of every variable of model_dir/ckpt-<step>."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(pathlib.Path(model_dir) / f"ckpt-{step}"))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name != "_CHECKPOINTABLE_OBJECT_GRAPH"}


def _assert_png(path, min_height, min_width):
    """A non-empty, decodable RGB PNG of at least the given size, not one flat colour."""
    from PIL import Image

    data = pathlib.Path(path).read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    with Image.open(path) as image:
        assert image.format == "PNG"
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape[0] >= min_height and pixels.shape[1] >= min_width, (path, pixels.shape)
    assert pixels.std() > 0, f"{path} is one flat colour"


@pytest.fixture(scope="module", params=FAMILIES)
def straight(request, tiny_records, tmp_path_factory):
    """(family, model dir, stdout) of trainer.py --mode=train_and_eval: 2 steps
    straight, a checkpoint after each (ckpt-1, ckpt-2), TensorBoard pictures
    at step 2, then the evaluation of the 2 val scenes."""
    family = request.param
    model_dir = tmp_path_factory.mktemp(f"{family}_straight") / "run"
    result = _train(family, model_dir, tiny_records, "Trainer.checkpoint_every = 1",
                    "Trainer.image_summary_every = 2", mode="train_and_eval")
    return family, model_dir, result.stdout


@pytest.fixture(scope="module")
def resumed(straight, tiny_records, tmp_path_factory):
    """(model dir, stdout) of trainer.py --mode=train resumed from a copy of the
    straight run's step-1 checkpoint (its model_config.json, ckpt-1 and a
    `checkpoint` file naming it) to step 2."""
    family, source, _ = straight
    model_dir = tmp_path_factory.mktemp(f"{family}_resumed") / "run"
    model_dir.mkdir()
    shutil.copy(source / "model_config.json", model_dir)
    for path in source.glob("ckpt-1.*"):
        shutil.copy(path, model_dir)
    (model_dir / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n'
                                          'all_model_checkpoint_paths: "ckpt-1"\n')
    result = _train(family, model_dir, tiny_records)
    return model_dir, result.stdout


@pytest.fixture(scope="module")
def predicted(straight, tiny_records, tmp_path_factory):
    """(output dir, completed run) of scripts/predict.py on the straight run's
    model dir and the 2 val scenes, COCO format, 2 pictures."""
    family, model_dir, _ = straight
    output = tmp_path_factory.mktemp(f"{family}_predictions")
    command = [sys.executable, str(PROJECT_ROOT / "scripts" / "predict.py"),
               f"--model_dir={model_dir}", f"--file_pattern={tiny_records}/val-*.tfrecord",
               f"--output_dir={output}", "--format=coco", "--num_pictures=2"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600,
                            env=quiet_env(), cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return output, result


def test_resuming_continues_the_step_count_and_equals_the_straight_run(straight, resumed):
    """1 step, then 1 more from the checkpoint in a new process, equals 2 steps
    straight (Trainer.deterministic, same schedule): every saved variable
    (weights, batch-norm statistics, Adam moments, step, random-number
    states) and the step-2 losses. A resume that dropped the optimizer state,
    reinitialized some layer, or replayed the first batch would differ."""
    family, straight_dir, _ = straight
    resumed_dir, stdout = resumed
    assert "Resumed at step 1: " in stdout and "no optimizer state" not in stdout, stdout
    expected, actual = _checkpoint(straight_dir, 2), _checkpoint(resumed_dir, 2)
    assert actual[STEP_KEY] == 2 and actual[ITERATIONS_KEY] == 2
    # Step 2 was trained, not skipped: most trainable weights moved (the
    # checkpoint stores them under the optimizer, which tracks them first).
    first = _checkpoint(straight_dir, 1)
    trainable = [k for k in actual if k.startswith("optimizer/_trainable_variables/")]
    assert sum(not np.array_equal(first[k], actual[k]) for k in trainable) > len(trainable) / 2
    assert actual.keys() == expected.keys()
    for name in expected:
        np.testing.assert_array_equal(actual[name], expected[name], err_msg=name)
    # The summaries continue at step 2 (no step 1 written by the resumed run).
    resumed_losses = event_scalars(resumed_dir / "train", "losses/total_loss")
    straight_losses = event_scalars(straight_dir / "train", "losses/total_loss")
    assert len(straight_losses) == 2 and resumed_losses == straight_losses[1:]


def _in_unit_interval(value):
    return value is not None and math.isfinite(value) and 0.0 <= value <= 1.0


def test_evaluation_writes_pq_pq_dagger_miou_mask_and_box_ap(straight):
    """metrics-2.json of train_and_eval: PQ (All, Things, Stuff), PQ-dagger,
    mIoU, mask AP and box AP (the top-down families predict boxes) as finite
    fractions in [0, 1], over the 2 val scenes; the same in TensorBoard."""
    import tensorflow as tf

    family, model_dir, stdout = straight
    metrics = json.loads((model_dir / "eval" / "metrics-2.json").read_text())
    assert metrics["step"] == 2 and metrics["num_images"] == 2
    for group in ("All", "Things", "Stuff"):
        for key in ("pq", "sq", "rq"):
            assert _in_unit_interval(metrics[group][key]), (group, key, metrics[group])
        assert _in_unit_interval(metrics["pq_dagger"][group]), metrics["pq_dagger"]
    for key in ("miou", "AP", "AP50", "AP75", "box_AP", "box_AP50", "box_AP75"):
        assert _in_unit_interval(metrics.get(key)), (key, metrics.get(key))
    # Two steps from random weights still label some pixels right.
    assert metrics["miou"] > 0, metrics
    assert "PQ-dag" in stdout and "mask AP" in stdout and "box AP" in stdout
    tags = set()
    for path in (model_dir / "eval").glob("events.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            tags.update(value.tag for value in event.summary.value)
    assert {"PQ/All", "miou", "AP", "box_AP"} <= tags, tags


def test_evaluation_and_training_write_prediction_pictures(straight):
    """The evaluator's pictures-2/*.png (Evaluator.num_pictures = 2) and the
    trainer's TensorBoard "predictions" images are valid PNGs at least the
    scene's size (64x96), not blank."""
    import tensorflow as tf

    _, model_dir, _ = straight
    pictures = sorted((model_dir / "eval" / "pictures-2").glob("*.png"))
    assert len(pictures) == 2, pictures
    for path in pictures:
        _assert_png(path, 64, 96)
    encoded = []
    for path in (model_dir / "train").glob("events.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.tag == "predictions":
                    # [width, height, png, png, ...] strings
                    encoded += list(tf.make_ndarray(value.tensor)[2:])
    assert len(encoded) == 2
    for png in encoded:
        assert png[:8] == PNG_SIGNATURE
        image = tf.io.decode_png(png).numpy()
        assert image.shape[0] >= 64 and image.shape[1] >= 96 and image.std() > 0


def test_predict_script_writes_each_scene_as_the_evaluation_scored_it(straight, predicted,
                                                                     tiny_records, tmp_path):
    """predict.py's COCO files: one readable panoptic PNG per val scene at the
    scene's size (64x96), segments of valid classes, 2 pictures; scored
    against the ground truth with the COCO panopticapi-style scorer they give
    the PQ the in-training evaluation reported for the same checkpoint."""
    from deeplab2 import common
    from deeplab2.data import pipeline
    from deeplab2.evaluation import coco_format
    from deeplab2.evaluation.coco_evaluation import evaluate_coco_panoptic
    from deeplab2.evaluation.prediction_writer import output_paths, read_predictions
    from deeplab2.model.model_dir import read_model_config

    _, model_dir, _ = straight
    output, result = predicted
    assert "Predicted 2 images" in result.stdout and "(step 2)" in result.stdout
    config = read_model_config(str(model_dir))
    info = config.dataset
    labels = {}
    for batch in pipeline.evaluation_dataset(f"{tiny_records}/val-*.tfrecord", config,
                                             global_batch_size=1):
        height, width = int(batch[common.IMAGE_HEIGHT][0]), int(batch[common.IMAGE_WIDTH][0])
        labels[batch[common.IMAGE_ID][0].numpy().decode()] = (
            batch[common.PANOPTIC_LABEL][0, :height, :width].numpy())
    json_path, png_dir = output_paths(str(output), "coco")
    for name in os.listdir(png_dir):
        _assert_png(pathlib.Path(png_dir) / name, 64, 96)
    maps = read_predictions(json_path, png_dir, info)
    assert sorted(maps) == sorted(labels)
    for image_id, panoptic in maps.items():
        assert panoptic.shape == labels[image_id].shape == (64, 96)
        classes = set(np.unique(panoptic[panoptic != info.ignore_panoptic_id]
                                // info.label_divisor))
        assert classes and classes <= set(range(info.num_classes)), classes
    pictures = sorted((output / "pictures").glob("*.png"))
    assert len(pictures) == 2
    for path in pictures:
        _assert_png(path, 64, 96)

    (tmp_path / "gt").mkdir()
    annotations = [coco_format.write_panoptic(str(tmp_path / "gt" / f"{k}.png"), label,
                                              info, k, groundtruth=True)
                   for k, label in labels.items()]
    (tmp_path / "gt.json").write_text(json.dumps(
        {"annotations": annotations, "categories": coco_format.categories(info)}))
    scores = evaluate_coco_panoptic(str(tmp_path / "gt.json"), str(tmp_path / "gt"),
                                    json_path, png_dir)
    metrics = json.loads((model_dir / "eval" / "metrics-2.json").read_text())
    assert scores["num_images"] == 2
    for group in ("All", "Things", "Stuff"):
        np.testing.assert_allclose(scores[group]["pq"], metrics[group]["pq"], atol=1e-6,
                                   err_msg=group)


@pytest.fixture(scope="module")
def mirrored(tiny_records, tmp_path_factory):
    """The report of this file run as a script (one process, 2 logical CPUs)."""
    return script_report(__file__, tiny_records, tmp_path_factory.mktemp("mirrored"))


def test_a_mirrored_seamless_step_synchronizes_batch_norm(mirrored):
    """One TrainLoop step of Seamless under MirroredStrategy on 2 logical CPUs
    (1 image per replica), batch norm trained everywhere with momentum 0:
    finite losses; every moving mean and variance (backbone, FPN, RPN,
    semantic head) equals one device's on the 2 images in one batch (1e-4
    relative to 1 + |value|), and so does the semantic loss, which no
    sampling affects. Per-replica statistics (what unsynchronized batch norm
    would average) differ from them by far more, so the check can fail.

    With the default 64 pooling window the small maps pool globally: the
    pooled branch's batch norm then sees one value per image and channel,
    with a variance of ~5e-5 over the 2 images. The two-pass synchronized
    statistics of FusedBatchNormalization keep it; Keras's one-pass
    E[x^2] - E[x]^2 in float32 was off by ~2% there (measured), which moved
    the next batch norm's statistics by up to 1.6e-3."""
    report = mirrored
    assert report["num_replicas"] == 2
    assert all(math.isfinite(v) for v in report["losses"].values()), report["losses"]
    assert report["largest_update"] > 0
    np.testing.assert_allclose(report["losses"]["semantic_loss"],
                               report["reference_semantic_loss"], rtol=1e-4)
    statistics = report["batch_norm"]
    assert statistics["same_names"] and statistics["num_statistics"] >= 50, statistics
    assert statistics["max_difference"] < 1e-4, statistics
    assert statistics["max_unsynchronized_difference"] > 1e-2, statistics


# --- The subprocess: run as a script on 2 logical CPUs. ----------------------------------


def _mirrored_checks(records, work_dir):
    """The report of one mirrored Seamless training step against one device."""
    import keras
    import tensorflow as tf

    sys.path.insert(0, str(PROJECT_ROOT / "tests"))
    import strided_conv_backbone
    from deeplab2.data import pipeline
    from deeplab2.model import build_model, get_meta_architecture
    from deeplab2.training.train_loop import LoopOptions, TrainLoop

    # The four-layer test backbone: the subject is the heads and the loop.
    backbone = strided_conv_backbone.register()
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    mirrored_strategy = tf.distribute.MirroredStrategy(devices)
    shared = dict(fpn_channels=16, box_fc_channels=32, mask_channels=8,
                  rpn_pre_nms_top_k_train=100, rpn_pre_nms_top_k_test=100,
                  rpn_post_nms_top_k=50, roi_samples=32, max_detections=20)
    # Every batch norm trained and synchronized (backbone included), momentum
    # 0 (the moving statistics are the step's batch statistics).
    options = dict(shared, semantic_channels=16, frozen_bn=False, freeze_at=0,
                   bn_momentum=0.0)

    def model_under(strategy):
        with strategy.scope():
            keras.utils.set_random_seed(0)
            return build_model("seamless", "synthetic", crop_size=(64, 96),
                               backbone=backbone, **options)

    def statistics(model):
        return {v.path: v.numpy() for v in model.weights
                if "moving_mean" in v.path or "moving_variance" in v.path}

    def largest_difference(values, expected):
        return max(float(np.max(np.abs(values[k] - expected[k]) / (1 + np.abs(expected[k]))))
                   for k in expected)

    meta = get_meta_architecture("seamless")
    model = model_under(mirrored_strategy)
    config = model.model_config
    targets, loss_fn = meta.training_targets(config), meta.training_loss(config)

    def dataset_fn(context, start_step):
        return pipeline.training_dataset(
            f"{records}/train-*.tfrecord", config, targets, global_batch_size=2, seed=0,
            start_step=start_step, input_context=context,
            options=pipeline.TrainingInput(min_scale=1.0, max_scale=1.0, flip_prob=0.0))

    with mirrored_strategy.scope():
        optimizer = keras.optimizers.SGD(1e-3)
    before = {v.path: v.numpy() for v in model.trainable_weights}
    loop = TrainLoop(mirrored_strategy, model, loss_fn, optimizer, dataset_fn, work_dir,
                     LoopOptions(num_steps=1, global_batch_size=2, steps_per_loop=1),
                     forward_fn=meta.training_outputs)
    losses = loop.train()
    report = dict(num_replicas=mirrored_strategy.num_replicas_in_sync, losses=losses,
                  largest_update=max(float(np.max(np.abs(v.numpy() - before[v.path])))
                                     for v in model.trainable_weights))

    # One device, the same 2 images (the first global batch of the stream).
    reference = model_under(tf.distribute.get_strategy())
    batch = next(iter(dataset_fn(tf.distribute.InputContext(), 0)))
    batch = {k: v for k, v in batch.items() if v.dtype != tf.string}
    forward = tf.function(lambda b: loss_fn(b, meta.training_outputs(reference, b)))
    whole = forward(batch)
    whole_statistics = statistics(reference)
    report["reference_semantic_loss"] = float(tf.reduce_mean(whole["semantic_loss"]))
    per_image = []
    for i in range(2):
        forward({k: v[i:i + 1] for k, v in batch.items()})
        per_image.append(statistics(reference))
    # What each replica would have kept without synchronization, averaged.
    unsynchronized = {k: (per_image[0][k] + per_image[1][k]) / 2 for k in whole_statistics}
    mirrored_statistics = statistics(model)
    report["batch_norm"] = dict(
        same_names=sorted(mirrored_statistics) == sorted(whole_statistics),
        num_statistics=len(whole_statistics),
        max_difference=largest_difference(mirrored_statistics, whole_statistics),
        max_unsynchronized_difference=largest_difference(unsynchronized, whole_statistics))
    return report


if __name__ == "__main__":
    import tensorflow as tf

    tf.config.set_logical_device_configuration(
        tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2)
    print(json.dumps(_mirrored_checks(sys.argv[1], sys.argv[2])))
