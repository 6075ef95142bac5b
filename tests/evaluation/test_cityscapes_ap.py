"""Cityscapes instance AP (deeplab2.evaluation.cityscapes_ap) equals
cityscapesScripts' evalInstanceLevelSemanticLabeling to 1e-9 (every class and
overlap threshold) on the real sample and perturbed predictions of it, from
instanceIds ground truth and from the library's panoptic ground truth; the
cityscapes_instance / cityscapes_semantic files of PredictionWriter and
scripts/predict.py are read by cityscapesScripts' own evaluations."""
import copy
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import PROJECT_ROOT, shared_subdir
from deeplab2.data.converters.cityscapes import _segments as converter_segments
from deeplab2.data.dataset_info import get_dataset_info
from deeplab2.evaluation.cityscapes_ap import (OVERLAPS, CityscapesAP,
                                               encode_instance_ids, encode_panoptic)
from deeplab2.evaluation.dataset_evaluation import SplitMetrics
from deeplab2.evaluation.prediction_writer import (PredictionWriter, output_paths,
                                                   read_predictions, write_instance_txt)
from deeplab2.utils.paths import UnsafePathError

INFO = get_dataset_info("cityscapes")
LABEL_IDS = tuple(INFO.source_ids[c] for c in INFO.thing_ids)  # person .. bicycle
NAMES = {INFO.source_ids[c]: INFO.class_names[c] for c in INFO.thing_ids}
VOID_IDS = sorted(set(range(34)) - set(INFO.source_ids))
SAMPLE_ID = "frankfurt_000000_000294"
TOLERANCE = 1e-9


@pytest.fixture
def cityscapes_scripts(monkeypatch):
    """cityscapesScripts' instance evaluation module (installed for tests only).
    Version 2.3.0 calls np.in1d, which NumPy 2.4 removed: np.isin, flattened,
    is the same function."""
    module = pytest.importorskip(
        "cityscapesscripts.evaluation.evalInstanceLevelSemanticLabeling")
    monkeypatch.setattr(np, "in1d", lambda a, b: np.isin(a, b).ravel(), raising=False)
    return module


@pytest.fixture(scope="module")
def sample(shared_data):
    """{image id: instanceIds} of the real sample (4 persons and 3 cars, 5 of
    them below the 100-pixel minimum) and of variants of it: 4x
    enlarged; 4x enlarged with two instances turned into groups (a small one
    among them) and one into void; 2x enlarged with a caravan instance."""
    root = shared_subdir(shared_data, "cityscapes")
    ids = np.array(Image.open(root / "gtFine/val/frankfurt" /
                              f"{SAMPLE_ID}_gtFine_instanceIds.png")).astype(np.int64)
    large = np.kron(ids, np.ones((4, 4), np.int64))
    groups = large.copy()
    groups[groups == 24001] = 24
    groups[groups == 26000] = 26  # 96 pixels
    groups[groups == 24003] = 30  # trailer without instances: void
    caravan = np.kron(ids, np.ones((2, 2), np.int64))
    caravan[caravan == 24002] = 29000
    return {SAMPLE_ID: ids, "frankfurt_000001_000001": large,
            "lindau_000002_000002": groups, "munster_000003_000003": caravan}


def write_ground_truth(folder, images):
    """Official gtFine files (instanceIds, labelIds) of {image id: instanceIds};
    returns their instanceIds paths in the order of `images`."""
    paths = []
    for image_id, ids in images.items():
        city = folder / "gtFine" / "val" / image_id.split("_")[0]
        city.mkdir(parents=True, exist_ok=True)
        path = city / f"{image_id}_gtFine_instanceIds.png"
        Image.fromarray(ids.astype(np.uint16)).save(path)
        labels = np.where(ids >= 1000, ids // 1000, ids).astype(np.uint8)
        Image.fromarray(labels).save(city / f"{image_id}_gtFine_labelIds.png")
        paths.append(str(path))
    return paths


def official_ap(module, gt_paths, txt_paths, result_root):
    """cityscapesScripts' ([class, overlap] AP table, averages) of prediction txt files."""
    from cityscapesscripts.evaluation.instances2dict import instances2dict

    args = copy.copy(module.args)
    args.predictionPath = os.path.abspath(result_root)
    args.quiet = True
    module.setInstanceLabels(args)
    assert args.instLabels == [NAMES[i] for i in LABEL_IDS]
    matches = module.matchGtWithPreds(txt_paths, gt_paths, instances2dict(gt_paths), args)
    table = module.evaluateMatches(matches, args)
    return table[0], module.computeAverages(table, args)


def _close(ours, official) -> bool:
    return (ours is None and np.isnan(official)) or abs(ours - official) <= TOLERANCE


def assert_equals_official(table, result, official, class_key=lambda label_id: label_id):
    """Our AP table and result equal cityscapesScripts' to TOLERANCE (nan: None)."""
    official_table, averages = official
    np.testing.assert_allclose(table, official_table, rtol=0, atol=TOLERANCE)
    assert _close(result["AP"], averages["allAp"]), (result["AP"], averages["allAp"])
    assert _close(result["AP50"], averages["allAp50%"])
    for label_id in LABEL_IDS:
        ours = result["per_class"][class_key(label_id)]
        theirs = averages["classes"][NAMES[label_id]]
        assert _close(ours["ap"], theirs["ap"]) and _close(ours["ap50"], theirs["ap50%"])


# Perturbed predictions of an instanceIds map: ([H, W] masks, label ids, scores).

def _grow(mask, steps):
    """The mask dilated (steps > 0) or eroded (steps < 0) with a 4-neighbourhood."""
    for _ in range(abs(steps)):
        padded = np.pad(mask, 1, constant_values=steps < 0)
        neighbours = [padded[1:-1, 1:-1], padded[:-2, 1:-1], padded[2:, 1:-1],
                      padded[1:-1, :-2], padded[1:-1, 2:]]
        mask = (np.logical_and if steps < 0 else np.logical_or).reduce(neighbours)
    return mask


def _instances(ids):
    """[(mask, label id)] of the instances (not groups) of the evaluated classes."""
    return [(ids == v, int(v) // 1000) for v in np.unique(ids)
            if v >= 1000 and v // 1000 in LABEL_IDS]


def _box(shape, rng, max_side):
    mask = np.zeros(shape, bool)
    y, x = rng.integers(0, shape[0]), rng.integers(0, shape[1])
    mask[y:y + rng.integers(1, max_side), x:x + rng.integers(1, max_side)] = True
    return mask


def _exact(ids, rng):
    masks, labels = zip(*_instances(ids))
    return list(masks), list(labels), list(rng.random(len(masks)))


def _dropped(ids, rng):
    masks, labels, scores = _exact(ids, rng)
    keep = rng.random(len(masks)) > 0.4
    return ([m for m, k in zip(masks, keep) if k], [lab for lab, k in zip(labels, keep) if k],
            [s for s, k in zip(scores, keep) if k])


def _eroded_dilated_shifted(ids, rng):
    masks, labels, scores = _exact(ids, rng)
    changes = [lambda m: _grow(m, -1), lambda m: _grow(m, 2), lambda m: _grow(m, -2),
               lambda m: np.roll(m, (2, 3), (0, 1)), lambda m: np.roll(m, (-5, 1), (0, 1)),
               lambda m: _grow(m, 1), lambda m: np.roll(m, 1, 1)]
    return [changes[i % len(changes)](m) for i, m in enumerate(masks)], labels, scores


def _shuffled_scores_and_false_positives(ids, rng):
    masks, labels, scores = _exact(ids, rng)
    for _ in range(6):
        masks.append(_box(ids.shape, rng, ids.shape[0] // 3))
        labels.append(int(rng.choice(LABEL_IDS[:3])))
        scores.append(rng.random())
    return masks, labels, list(rng.permutation(scores))


def _on_ignore_regions(ids, rng):
    """Mostly-void and half-void masks, masks on groups and on the caravan."""
    masks, labels, scores = _exact(ids, rng)
    void = np.isin(ids, VOID_IDS)
    for share in (0.9, 0.5):
        masks.append(void & (rng.random(ids.shape) < share) | _box(ids.shape, rng, 8))
        labels.append(26)
        scores.append(rng.random())
    for value, label in ((24, 24), (26, 26), (29000, 26), (30, 24)):
        if np.any(ids == value):
            masks.append(_grow(ids == value, int(rng.integers(-1, 2))))
            labels.append(label)
            scores.append(rng.random())
    return masks, labels, scores


def _tiny_regions(ids, rng):
    """The instances below the minimum size predicted exactly or roughly, and
    tiny false positives."""
    masks, labels, scores = [], [], []
    for mask, label in _instances(ids):
        masks.append(mask if mask.sum() < 100 else np.roll(mask, 2, 0))
        labels.append(label)
        scores.append(rng.random())
    for _ in range(5):
        masks.append(_box(ids.shape, rng, 4))
        labels.append(int(rng.choice(LABEL_IDS)))
        scores.append(rng.random())
    return masks, labels, scores


def _duplicates_ties_and_other_classes(ids, rng):
    """Each instance twice, scores in ten ties, a wrong class, a stuff label
    and an unevaluated class (both skipped), an empty mask."""
    masks, labels, scores = _exact(ids, rng)
    masks += [np.roll(m, 1, 1) for m in masks]
    labels += [27 if i == 0 else lab for i, lab in enumerate(labels)]
    scores = list(np.round(rng.random(len(masks)), 1))
    for label in (7, 29, 26):
        masks.append(_box(ids.shape, rng, 20) if label != 26 else np.zeros(ids.shape, bool))
        labels.append(label)
        scores.append(0.5)
    return masks, labels, scores


def _mixed(ids, rng):
    """A random draw of every perturbation above."""
    parts = [f(ids, rng) for f in (_dropped, _eroded_dilated_shifted, _on_ignore_regions,
                                    _tiny_regions)]
    keep = [rng.random(len(p[0])) < 0.35 for p in parts]
    return tuple([x for p, k in zip(parts, keep) for x, kept in zip(p[i], k) if kept]
                 for i in range(3))


PERTURBATIONS = {
    "exact": _exact, "dropped": _dropped, "eroded_dilated_shifted": _eroded_dilated_shifted,
    "shuffled_scores_and_false_positives": _shuffled_scores_and_false_positives,
    "on_ignore_regions": _on_ignore_regions, "tiny_regions": _tiny_regions,
    "duplicates_ties_and_other_classes": _duplicates_ties_and_other_classes,
    "mixed_0": _mixed, "mixed_1": _mixed, "mixed_2": _mixed,
}


@pytest.mark.parametrize("name", PERTURBATIONS)
def test_cityscapes_ap_equals_cityscapesscripts_on_perturbed_predictions(
        name, sample, cityscapes_scripts, tmp_path):
    rng = np.random.default_rng(sorted(PERTURBATIONS).index(name))
    gt_paths = write_ground_truth(tmp_path, sample)
    result_root = tmp_path / "results"
    ap = CityscapesAP(LABEL_IDS)
    txt_paths = []
    for image_id, ids in sample.items():
        masks, labels, scores = PERTURBATIONS[name](ids, rng)
        txt_paths.append(str(result_root / f"{image_id}_pred.txt"))
        write_instance_txt(txt_paths[-1], np.array(masks), labels, scores)
        ap.add_entry(encode_instance_ids(ids, np.array(masks), labels, scores, INFO))
    official = official_ap(cityscapes_scripts, gt_paths, txt_paths, result_root)
    table, result = ap.ap_table(), ap.result()
    assert_equals_official(table, result, official)
    assert not np.isnan(table).all()
    if name == "exact":
        assert result["AP"] == result["AP50"] == 1.0


def test_cityscapes_ap_of_a_hand_worked_case(cityscapes_scripts, tmp_path):
    """Three cars of 100 pixels, a 50-pixel car, road and a void strip.

    Predictions: car 1 exactly (score 0.9); car 2 shifted by 2 columns (0.8;
    IoU 80 / 120 = 2/3); a false positive on road (0.7); the small car
    exactly (0.95) and a mask on void (0.85), which count neither way.
    Threshold t <= 0.65 (4 of 10), car 2 matched: scores 0.9 T, 0.8 T, 0.7 F,
    car 3 missed. At each distinct score s (ascending), precision and recall
    of the detections scored >= s: 0.7: (2/3, 2/3), 0.8: (1, 2/3),
    0.9: (1, 1/3), then (1, 0). Each precision weighs half the recall gap
    of its neighbours: 2/3 * 0 + 1 * (2/3 - 1/3) / 2 + 1 * (2/3 - 0) / 2
    + 1 * (1/3 - 0) / 2 = 2/3.
    t >= 0.7 (6 of 10), car 2 unmatched: 0.9 T, 0.8 F, 0.7 F, 2 missed:
    (1/3, 1/3), (1/2, 1/3), (1, 1/3), (1, 0): 1 * 1/3 / 2 + 1 * 1/3 / 2 = 1/3.
    AP = (4 * 2/3 + 6 * 1/3) / 10 = 7/15, AP50 = 2/3.
    """
    ids = np.full((30, 60), 7, np.int64)
    ids[20:30, 40:60] = 4  # "static": void
    ids[5:15, 2:12], ids[5:15, 20:30], ids[5:15, 40:50] = 26000, 26001, 26002
    ids[20:25, 2:12] = 26003
    masks = np.zeros((5, 30, 60), bool)
    masks[0, 5:15, 2:12] = masks[1, 5:15, 22:32] = masks[2, 20:30, 20:30] = True
    masks[3] = ids == 26003
    masks[4, 20:30, 45:55] = True
    scores = [0.9, 0.8, 0.7, 0.95, 0.85]
    ap = CityscapesAP(LABEL_IDS)
    ap.add_entry(encode_instance_ids(ids, masks, [26] * 5, scores, INFO))
    result = ap.result()
    assert result["AP"] == pytest.approx(7 / 15, abs=1e-15)
    assert result["AP50"] == pytest.approx(2 / 3, abs=1e-15)
    np.testing.assert_allclose(ap.ap_table()[2], np.where(OVERLAPS < 2 / 3, 2 / 3, 1 / 3))
    assert result["per_class"][24] == {"ap": None, "ap50": None}

    gt_paths = write_ground_truth(tmp_path, {"aachen_000000_000000": ids})
    txt = tmp_path / "results" / "aachen_000000_000000_pred.txt"
    write_instance_txt(str(txt), masks, [26] * 5, scores)
    official = official_ap(cityscapes_scripts, gt_paths, [str(txt)], tmp_path / "results")
    assert_equals_official(ap.ap_table(), result, official)


def panoptic_ground_truth(ids):
    """The panoptic map the Cityscapes converter stores for an instanceIds map."""
    labels = np.where(ids >= 1000, ids // 1000, ids)
    segment_map, panoptic_ids, _ = converter_segments(ids, labels, "instanceIds", "labelIds")
    return panoptic_ids[segment_map]


def perturbed_panoptic(gt, rng):
    """A prediction of a panoptic map: instances kept, dropped, shifted, eroded
    or of another class; new instances on stuff, void, groups, tiny ones.
    Returns (map, {thing panoptic id: score})."""
    divisor, road = INFO.label_divisor, 0
    pred = np.where(np.isin(gt // divisor, INFO.thing_ids) & (gt % divisor == 0), road, gt)
    pred[gt == INFO.ignore_panoptic_id] = 2 * divisor  # void predicted as building
    next_id = 500
    instances = [v for v in np.unique(gt) if v // divisor in INFO.thing_ids and v % divisor]
    for value in instances:
        mask, action = gt == value, rng.integers(0, 5)
        pred[mask] = road
        if action == 1:
            mask = np.roll(mask, (int(rng.integers(-4, 5)), int(rng.integers(-4, 5))), (0, 1))
        elif action == 2:
            mask = _grow(mask, -1)
        elif action == 3:  # another class: truck for a car, else car
            value = (14 if value // divisor == 13 else 13) * divisor + next_id
            next_id += 1
        if action != 4:
            pred[mask] = value
    extra = [_box(gt.shape, rng, gt.shape[0] // 4) for _ in range(3)]
    extra += [gt == INFO.ignore_panoptic_id, np.isin(gt, [11 * divisor, 13 * divisor]),
              _box(gt.shape, rng, 3)]
    for mask in extra:
        pred[mask] = int(rng.choice(INFO.thing_ids)) * divisor + next_id
        next_id += 1
    things = [int(v) for v in np.unique(pred) if v // divisor in INFO.thing_ids]
    scores = dict(zip(things, np.round(rng.random(len(things)), 2)))
    return pred, scores


@pytest.mark.parametrize("seed", [0, 1])
def test_cityscapes_ap_of_panoptic_maps_equals_cityscapesscripts_on_written_files(
        seed, sample, cityscapes_scripts, tmp_path):
    """SplitMetrics on the converter's panoptic ground truth (no caravans: the
    converter stores them as void) and perturbed panoptic predictions equals
    cityscapesScripts on the cityscapes_instance files PredictionWriter
    writes; workers' payloads merge to the same numbers."""
    rng = np.random.default_rng(seed)
    images = {k: v for k, v in sample.items() if not np.any(v // 1000 == 29)}
    gt_paths = write_ground_truth(tmp_path, images)
    writer = PredictionWriter(str(tmp_path / "pred"), INFO, ["cityscapes_instance"])
    metrics, workers = SplitMetrics(INFO), [SplitMetrics(INFO), SplitMetrics(INFO)]
    table = CityscapesAP(INFO.thing_ids)
    for index, (image_id, ids) in enumerate(images.items()):
        gt = panoptic_ground_truth(ids)
        pred, scores = perturbed_panoptic(gt, rng)
        metrics.score(index, image_id, gt, pred, scores)
        workers[index % 2].score(index, image_id, gt, pred, scores)
        table.add_entry(encode_panoptic(gt, pred, scores, INFO))
        writer.add(image_id, pred, scores)
    folder = writer.close()["cityscapes_instance"]
    assert folder == output_paths(str(tmp_path / "pred"), "cityscapes_instance")[1]
    txt_paths = [os.path.join(folder, f"{image_id}_pred.txt") for image_id in images]
    official = official_ap(cityscapes_scripts, gt_paths, txt_paths, folder)
    result = metrics.result()
    assert_equals_official(table.ap_table(), result, official,
                           class_key=lambda label_id: INFO.source_ids.index(label_id))
    assert 0 < result["AP"] < result["AP50"] < 1
    assert {"coco_AP", "coco_AP50", "coco_AP75"} <= result.keys() and "AP75" not in result
    merged = SplitMetrics(INFO)
    for worker in workers:
        merged.merge_payload(worker.payload())
    assert merged.result() == result


def test_cityscapes_ap_semantic_files_score_the_reported_miou(sample, tmp_path):
    """cityscapesScripts' pixel-level evaluation of the cityscapes_semantic
    files gives the per-class IoU and mIoU the library reports."""
    pixel_level = pytest.importorskip(
        "cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling")
    rng = np.random.default_rng(3)
    images = {k: sample[k] for k in (SAMPLE_ID, "lindau_000002_000002")}
    gt_paths = write_ground_truth(tmp_path, images)
    writer = PredictionWriter(str(tmp_path / "pred"), INFO, ["cityscapes_semantic"])
    metrics = SplitMetrics(INFO, compute_ap=False)
    for index, (image_id, ids) in enumerate(images.items()):
        gt = panoptic_ground_truth(ids)
        pred, _ = perturbed_panoptic(gt, rng)
        pred[rng.random(pred.shape) < 0.05] = INFO.ignore_panoptic_id  # void: label id 0
        metrics.score(index, image_id, gt, pred)
        writer.add(image_id, pred)
    folder = writer.close()["cityscapes_semantic"]
    args = copy.copy(pixel_level.args)
    args.quiet, args.JSONOutput, args.evalInstLevelScore = True, False, False
    official = pixel_level.evaluateImgLists(
        [os.path.join(folder, f"{image_id}_pred_labelIds.png") for image_id in images],
        [p.replace("instanceIds", "labelIds") for p in gt_paths], args)
    result = metrics.result()
    for cls, values in result["per_class"].items():
        assert _close(values["iou"], official["classScores"][INFO.class_names[cls]]), cls
    assert result["miou"] == pytest.approx(official["averageScoreClasses"], abs=TOLERANCE)


def test_cityscapes_ap_instance_format_needs_scores_and_safe_names(tmp_path):
    panoptic = np.zeros((4, 6), np.int64)
    panoptic[1:3, 1:4] = 13 * 1000 + 2
    writer = PredictionWriter(str(tmp_path), INFO, ["cityscapes_instance"])
    with pytest.raises(ValueError, match="no score for instance 13002"):
        writer.add("a", panoptic)
    for bad in ("../escape", "/abs/path"):
        with pytest.raises(UnsafePathError):
            writer.add(bad, panoptic, {13002: 0.5})
    with pytest.raises(ValueError, match="white space"):
        writer.add("with space", panoptic, {13002: 0.5})
    writer.add("sub/b", panoptic, {13002: 0.25})
    writer.add("a", panoptic, {13002: 0.5})  # the failed attempts wrote nothing
    folder = writer.close()["cityscapes_instance"]
    assert sorted(os.listdir(tmp_path)) == ["cityscapes_instance_val"]
    lines = open(os.path.join(folder, "sub", "b_pred.txt")).read().splitlines()
    assert lines == ["masks/b_0.png 26 0.25"]
    with Image.open(os.path.join(folder, "sub", "masks", "b_0.png")) as mask:
        assert mask.mode == "L"
        np.testing.assert_array_equal(np.array(mask) > 0, panoptic > 0)
    leftovers = [f for _, _, files in os.walk(tmp_path) for f in files if "incomplete" in f]
    assert not leftovers


def test_cityscapes_ap_of_predict_script_files_read_by_cityscapesscripts(
        shared_data, cityscapes_scripts, tmp_path):
    """predict.py --format=cityscapes,cityscapes_instance,cityscapes_semantic on
    the sample's TFRecords: cityscapesScripts reads the instance and semantic
    files, and its AP equals ours on the same predictions."""
    import keras
    import tensorflow as tf

    from deeplab2.data.converters.cityscapes import convert_cityscapes
    from deeplab2.model import build_model, model_dir

    root = shared_subdir(shared_data, "cityscapes")
    convert_cityscapes(str(root), "val", str(tmp_path / "records"), num_workers=1)
    keras.utils.set_random_seed(0)
    model = build_model(dataset="cityscapes", crop_size=(129, 257),
                        backbone="mobilenet_v3_small", output_stride=32,
                        semantic_aspp_channels=16, semantic_decoder_channels=16,
                        semantic_low_level_channels=(8, 8), semantic_head_channels=16,
                        instance_aspp_channels=16, instance_decoder_channels=8,
                        instance_low_level_channels=(8, 8), instance_head_channels=8)
    for variable in model.trainable_variables:  # a random model with instances
        variable.assign(variable * 1.5)
    directory = str(tmp_path / "model")
    model_dir.write_model_config(directory, model.model_config)
    tf.train.Checkpoint(**{model_dir.CHECKPOINT_MODEL_KEY: model,
                           model_dir.CHECKPOINT_STEP_KEY: tf.Variable(1, dtype=tf.int64)}
                        ).save(os.path.join(directory, "ckpt"))
    command = [sys.executable, str(PROJECT_ROOT / "scripts" / "predict.py"),
               f"--model_dir={directory}", f"--output_dir={tmp_path / 'pred'}",
               f"--file_pattern={tmp_path / 'records'}/val-*.tfrecord",
               "--format=cityscapes,cityscapes_instance,cityscapes_semantic"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert run.returncode == 0, run.stderr[-3000:]

    pred = str(tmp_path / "pred")
    instance_ids = np.array(Image.open(
        root / "gtFine/val/frankfurt" / f"{SAMPLE_ID}_gtFine_instanceIds.png"))
    panoptic = read_predictions(*output_paths(pred, "cityscapes"), INFO)[SAMPLE_ID]
    folder = output_paths(pred, "cityscapes_instance")[1]
    txt = os.path.join(folder, f"{SAMPLE_ID}_pred.txt")
    scores = {}
    for line in open(txt).read().splitlines():
        name, label_id, score = line.split(" ")
        mask = np.array(Image.open(os.path.join(folder, name))) > 0
        (panoptic_id,) = np.unique(panoptic[mask])
        assert INFO.source_ids[panoptic_id // 1000] == int(label_id)
        scores[int(panoptic_id)] = float(score)
    assert scores, "the seeded model predicts instances"
    gt = panoptic_ground_truth(instance_ids.astype(np.int64))
    metrics = SplitMetrics(INFO)
    metrics.score(0, SAMPLE_ID, gt, panoptic, scores)
    official = official_ap(cityscapes_scripts,
                           [str(root / "gtFine/val/frankfurt" /
                                f"{SAMPLE_ID}_gtFine_instanceIds.png")], [txt], folder)
    table = CityscapesAP(INFO.thing_ids)
    table.add_entry(encode_panoptic(gt, panoptic, scores, INFO))
    assert_equals_official(table.ap_table(), metrics.result(), official,
                           class_key=lambda label_id: INFO.source_ids.index(label_id))

    pixel_level = pytest.importorskip(
        "cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling")
    args = copy.copy(pixel_level.args)
    args.quiet, args.JSONOutput, args.evalInstLevelScore = True, False, False
    semantic = os.path.join(output_paths(pred, "cityscapes_semantic")[1],
                            f"{SAMPLE_ID}_pred_labelIds.png")
    official = pixel_level.evaluateImgLists(
        [semantic], [str(root / "gtFine/val/frankfurt" / f"{SAMPLE_ID}_gtFine_labelIds.png")],
        args)
    assert metrics.result()["miou"] == pytest.approx(official["averageScoreClasses"],
                                                     abs=TOLERANCE)
