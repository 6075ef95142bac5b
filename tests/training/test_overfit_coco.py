"""The full top-down path on the real COCO sample: converter, pipeline,
training, fusion and evaluation. A small Panoptic FPN overfits the two images
(427x640 and 360x640, 40 thing instances of 4 classes, some 96 to 500 pixels,
and 4 stuff classes) at half their size (see overfit_coco_base.gin) and their
panoptic predictions, scored at the images' own size, reach PQ >= 80%, things
PQ >= 60%, box AP50 >= 80%; the loss drops at least 6x. Measured after the 300
steps: PQ 85.0% (things 84.3%, stuff 85.6%, RQ 99.2%), mIoU 81.8%, mask AP
71.0%, box AP50 95.5%, total loss 3.72 at step 10 and 0.23 at step 300 (after
200 steps PQ 80.2%). At full size 200 steps reached PQ 88.6% in twice the
time; a 160-step run with a 32-channel FPN and mask head reached PQ 78.3%;
with batch-norm momentum 0.99, 300 steps reach PQ 15.7% (things 0)."""
import json
import pathlib

import pytest

from _trainer_helpers import overfit_coco

OVERFIT_GIN = pathlib.Path(__file__).with_name("overfit_coco.gin")


@pytest.mark.slow
def test_overfit_the_real_coco_images_with_panoptic_fpn(tmp_path, shared_data):
    losses, metrics = overfit_coco(tmp_path, shared_data, OVERFIT_GIN)
    assert len(losses) >= 10
    assert losses[-1] * 6 <= losses[0], losses
    # One evaluation, after the last step (Trainer.num_steps of overfit_coco_base.gin).
    assert metrics["num_images"] == 2
    assert metrics["All"]["pq"] >= 0.8, json.dumps(metrics["All"])
    assert metrics["Things"]["pq"] >= 0.6, json.dumps(metrics["Things"])
    assert metrics["box_AP50"] >= 0.8, json.dumps(metrics)
