"""UPSNet's full path on the real COCO sample (as test_overfit_coco.py for
Panoptic FPN, same data and widths, 150 steps; see overfit_coco_upsnet.gin):
the panoptic predictions of the two images reach PQ >= 80% and things PQ >=
60%, the loss drops at least 3.5x. Measured after the 150 steps: PQ 85.7%
(things 79.0%, stuff 92.4%), mIoU 83.8%, mask AP 51.4%, box AP50 99.0%, total
loss 2.69 at step 10 and 0.63 at step 150 (4.3x); 654 s in CI beside another
test (the earlier 200-step run took about 7.5 minutes alone on 2 CPU cores, a
step 2.5x Panoptic FPN's: 1.75 s against 0.69 s, 0.62 s of it in the
deformable convolutions' gathers)."""
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
