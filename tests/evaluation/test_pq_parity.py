"""PQ / SQ / RQ equal hotcoco's panopticapi-compatible `pq_compute` to 1e-9 on
the real samples and on perturbed predictions of them."""
import contextlib
import io

import pytest

from conftest import shared_subdir
from evaluation_cases import (PERTURBATIONS, load_sample, perturb, split,
                              void_strips, write_set)
from deeplab2.evaluation.coco_evaluation import evaluate_coco_panoptic

hotcoco_panoptic = pytest.importorskip("hotcoco.panoptic")

TOL = 1e-9


def reference(gt_json, gt_dir, pred_json, pred_dir):
    with contextlib.redirect_stdout(io.StringIO()):
        return hotcoco_panoptic.pq_compute(gt_json, pred_json, gt_dir, pred_dir)


def assert_same(ours, ref):
    for group in ("All", "Things", "Stuff"):
        assert ours[group]["n"] == ref[group]["n"], group
        for key in ("pq", "sq", "rq"):
            assert ours[group][key] == pytest.approx(ref[group][key], abs=TOL), \
                (group, key)
    for category, values in ref["per_class"].items():
        mine = ours["per_class"][int(category)]
        for key in ("tp", "fp", "fn"):
            assert mine[key] == values[key], (category, key)
        present = values["tp"] + values["fp"] + values["fn"] > 0
        for key in ("pq", "sq", "rq"):
            expected = values[key] if present else None
            assert mine[key] == pytest.approx(expected, abs=TOL), (category, key)


@pytest.fixture(scope="module", params=["coco_panoptic", "coco_cats",
                                        "street_800"])
def sample(request, shared_data, tmp_path_factory):
    """(gt json dict, images, gt json path, gt png folder) of one dataset,
    rewritten to tmp so that every set is produced by the same writer."""
    shared_subdir(shared_data, request.param)
    gt, images = load_sample(shared_data, request.param)
    root = tmp_path_factory.mktemp(request.param)
    return (gt, images) + write_set(root / "gt", gt, images)


@pytest.mark.parametrize("name", sorted(PERTURBATIONS))
def test_matches_hotcoco_on_perturbed_predictions(sample, name, tmp_path):
    gt, images, gt_json, gt_dir = sample
    predictions = perturb(images, name, seed=len(name), categories=gt["categories"])
    pred_json, pred_dir = write_set(tmp_path / "pred", gt, predictions)
    ours = evaluate_coco_panoptic(gt_json, gt_dir, pred_json, pred_dir)
    assert_same(ours, reference(gt_json, gt_dir, pred_json, pred_dir))
    if name == "exact":
        assert ours["All"]["pq"] == 1.0 and ours["miou"] == 1.0
        assert ours["pq_dagger"]["All"] == 1.0


def test_matches_hotcoco_with_void_strips_in_ground_truth(sample, tmp_path):
    gt, images, gt_json, gt_dir = sample
    voided = [(a, void_strips(ids, a["segments_info"], None, None)[0])
              for a, ids in images]
    gt_json, gt_dir = write_set(tmp_path / "gt", gt, voided)
    ours = evaluate_coco_panoptic(gt_json, gt_dir, *sample[2:])
    assert_same(ours, reference(gt_json, gt_dir, *sample[2:]))


def test_matches_hotcoco_with_two_crowd_segments_of_a_category(
        sample, tmp_path):
    """panopticapi excuses a prediction only on the last crowd segment of its
    category in the image's list; the first half of each crowd is not."""
    gt, images, gt_json, gt_dir = sample
    halves = [(dict(a, segments_info=segments), ids) for a, (ids, segments) in
              ((a, split(ids, a["segments_info"], None, None, crowd_only=True))
               for a, ids in images)]
    gt_json, gt_dir = write_set(tmp_path / "gt", gt, halves)
    for name in ("exact", "crowd_overlaps"):
        predictions = perturb(images, name, 0, gt["categories"])
        pred_json, pred_dir = write_set(tmp_path / name, gt, predictions)
        ours = evaluate_coco_panoptic(gt_json, gt_dir, pred_json, pred_dir)
        assert_same(ours, reference(gt_json, gt_dir, pred_json, pred_dir))


def test_original_files_and_workers_give_the_same_numbers(shared_data):
    """The shared files themselves (declared areas), with 2 worker threads."""
    folder = shared_subdir(shared_data, "coco_panoptic")
    gt_json = str(folder / "panoptic_examples.json")
    gt_dir = str(folder / "panoptic")
    ours = evaluate_coco_panoptic(gt_json, gt_dir, gt_json, gt_dir,
                                  num_workers=2)
    assert_same(ours, reference(gt_json, gt_dir, gt_json, gt_dir))
    assert ours["num_images"] == 2
