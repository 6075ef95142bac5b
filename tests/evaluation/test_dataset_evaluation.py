"""evaluate_dataset: crops padded predictions, scores them, draws pictures."""
import os

import numpy as np
import pytest

from deeplab2 import common
from deeplab2.data import synthetic
from deeplab2.data.dataset_info import get_dataset_info
from deeplab2.evaluation.dataset_evaluation import evaluate_dataset

INFO = get_dataset_info("synthetic")
PAD = (7, 5)  # rows and columns of padding in the batches


def _batch_and_perfect_prediction(index):
    scene = synthetic.generate_scene(1, "val", index, height=48, width=64)
    h, w = scene.panoptic.shape
    pad = ((0, PAD[0]), (0, PAD[1]))
    label = np.pad(scene.panoptic, pad, constant_values=INFO.ignore_panoptic_id)
    image = np.pad(scene.image, pad + ((0, 0),), constant_values=127).astype(np.float32)
    batch = {common.IMAGE: image[None], common.PANOPTIC_LABEL: label[None],
             common.IMAGE_HEIGHT: np.array([h]), common.IMAGE_WIDTH: np.array([w]),
             common.IMAGE_ID: np.array([f"scene{index}".encode()])}
    prediction = scene.panoptic.copy()
    # Crowd regions are not predicted as instances: give them a fresh instance id.
    crowd = [s for s in scene.segments if s.is_crowd]
    for segment in crowd:
        prediction[scene.panoptic == segment.id] = segment.id + 900
    padded = np.pad(prediction, pad, constant_values=3 * INFO.label_divisor + 7)  # garbage
    things = sorted({int(i) for i in np.unique(prediction)
                     if i // INFO.label_divisor in INFO.thing_ids and i % INFO.label_divisor})
    ids = np.full((1, 16), INFO.ignore_panoptic_id)
    ids[0, :len(things)] = things
    predictions = {common.PANOPTIC: padded[None], common.INSTANCE_PANOPTIC_IDS: ids,
                   common.INSTANCE_SCORES: np.linspace(1, 0.5, 16)[None],
                   common.SEMANTIC: (padded // INFO.label_divisor)[None]}
    return batch, predictions


def test_perfect_predictions_score_one_and_padding_is_ignored(tmp_path):
    pairs = [_batch_and_perfect_prediction(i) for i in (0, 1, 2)]
    queue = [p for _, p in pairs]
    result = evaluate_dataset(lambda batch: queue.pop(0), [b for b, _ in pairs], INFO,
                              picture_dir=str(tmp_path), num_pictures=2)
    assert result["num_images"] == 3
    assert result["All"]["pq"] == pytest.approx(1.0)
    assert result["miou"] == pytest.approx(1.0)
    assert result["AP"] == pytest.approx(1.0)
    assert sorted(os.listdir(tmp_path)) == ["00000_scene0.png", "00001_scene1.png"]


def test_a_wrong_class_lowers_pq():
    batch, prediction = _batch_and_perfect_prediction(0)
    sky = prediction[common.PANOPTIC] == 0
    prediction[common.PANOPTIC][sky] = 2 * INFO.label_divisor  # sky predicted as ground
    result = evaluate_dataset(lambda batch: prediction, [batch], INFO, compute_ap=False)
    assert result["Stuff"]["pq"] < 0.7 and result["per_class"][0]["pq"] == 0.0
    assert "AP" not in result


def _noisy_prediction(index):
    """A scene and a prediction with wrong classes and split instances."""
    batch, prediction = _batch_and_perfect_prediction(index)
    panoptic = prediction[common.PANOPTIC][0]
    rng = np.random.default_rng(index)
    flip = rng.random(panoptic.shape) < 0.05
    panoptic[flip] = 2 * INFO.label_divisor
    panoptic[:, ::7] = np.where(panoptic[:, ::7] % INFO.label_divisor > 0,
                                panoptic[:, ::7] + 50, panoptic[:, ::7])
    things = sorted({int(i) for i in np.unique(panoptic)
                     if i // INFO.label_divisor in INFO.thing_ids and i % INFO.label_divisor})
    ids = np.full((1, 32), INFO.ignore_panoptic_id)
    ids[0, :len(things)] = things
    prediction[common.INSTANCE_PANOPTIC_IDS] = ids
    prediction[common.INSTANCE_SCORES] = rng.random((1, 32))
    return batch, prediction


def test_split_metrics_merged_from_workers_in_any_order_equal_one_pass():
    """Images scored on two 'workers' in a shuffled order, merged through their
    JSON payloads, give exactly the numbers of one in-order pass."""
    from deeplab2.evaluation.dataset_evaluation import SplitMetrics, score_batch

    pairs = [_noisy_prediction(i) for i in range(6)]
    reference = SplitMetrics(INFO)
    for index, (batch, prediction) in enumerate(pairs):
        list(score_batch(reference, batch, prediction, first_index=index))
    workers = [SplitMetrics(INFO), SplitMetrics(INFO)]
    for index in (4, 1, 5, 0, 3, 2):
        batch, prediction = pairs[index]
        list(score_batch(workers[index % 2], batch, prediction, first_index=index))
    merged = SplitMetrics(INFO)
    for worker in workers:
        merged.merge_payload(worker.payload())
    expected, actual = reference.result(), merged.result()
    assert 0 < expected["All"]["pq"] < 1 and 0 < expected["AP"] < 1
    assert actual == expected
    with pytest.raises(ValueError, match="image 1 was scored by two workers"):
        merged.merge_payload(workers[1].payload())
    with pytest.raises(ValueError, match=r"image 0 \(again\) was scored twice"):
        batch, prediction = pairs[0]
        reference.score(0, "again", batch[common.PANOPTIC_LABEL][0],
                        prediction[common.PANOPTIC][0])


def test_fillers_of_a_padded_batch_are_not_scored():
    batch, prediction = _batch_and_perfect_prediction(0)
    filler, filler_prediction = _batch_and_perfect_prediction(1)
    stacked = {k: np.concatenate([batch[k], filler[k]]) for k in batch}
    stacked[common.IMAGE_INDEX] = np.array([0, -1])
    predictions = {k: np.concatenate([prediction[k], filler_prediction[k]])
                   for k in prediction}
    result = evaluate_dataset(lambda b: predictions, [stacked], INFO)
    assert result["num_images"] == 1 and result["All"]["pq"] == pytest.approx(1.0)


@pytest.mark.parametrize("image_id", ["../../x", "a/../../../x", "x\0y"])
def test_picture_names_from_image_ids_never_leave_the_picture_folder(tmp_path, image_id):
    batch, prediction = _batch_and_perfect_prediction(0)
    batch[common.IMAGE_ID] = np.array([image_id.encode()])
    with pytest.raises(ValueError, match="image id"):
        evaluate_dataset(lambda b: prediction, [batch], INFO,
                         picture_dir=str(tmp_path / "a" / "pictures"), num_pictures=1)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
