"""UPSNet's full path on the real COCO sample (as test_overfit_coco.py for
Panoptic FPN, same data, size and widths, 200 steps; see
overfit_coco_upsnet.gin): the panoptic predictions of the two images reach PQ
>= 80% and things PQ >= 60%, the loss drops at least 3.5x. Measured after the
200 steps: PQ 84.7% (things 78.3%, stuff 91.0%), mIoU 82.9%, mask AP 53.5%,
box AP50 95.4%, total loss 2.72 at step 10 and 0.28 at step 200 (9.6x). A
step takes about 1 s on 2 CPU cores, 3x Panoptic FPN's: the deformable
convolutions' gathers, the RoI loss of 133 classes and the mask head on each
ground-truth instance."""
import json
import pathlib

import pytest

from _trainer_helpers import overfit_coco

OVERFIT_GIN = pathlib.Path(__file__).with_name("overfit_coco_upsnet.gin")


@pytest.mark.slow
def test_overfit_the_real_coco_images_with_upsnet(tmp_path, shared_data):
    losses, metrics = overfit_coco(tmp_path, shared_data, OVERFIT_GIN)
    assert len(losses) >= 10
    assert losses[-1] * 3.5 <= losses[0], losses
    assert metrics["num_images"] == 2
    assert metrics["All"]["pq"] >= 0.8, json.dumps(metrics["All"])
    assert metrics["Things"]["pq"] >= 0.6, json.dumps(metrics["Things"])
