"""The semantic label space of Panoptic FPN ('other' on COCO, all classes on
Cityscapes), the training targets of a hand-made label and the sampling seeds."""
import numpy as np
import pytest
import tensorflow as tf

from deeplab2 import common
from deeplab2.data.dataset_info import get_dataset_info
from deeplab2.model.panoptic_fpn import semantic_classes
from deeplab2.model.panoptic_fpn.targets import PanopticFPNTargets, sampling_seeds
from deeplab2.model.top_down import instance_targets as gt

COCO = get_dataset_info("coco")
CITYSCAPES = get_dataset_info("cityscapes")
SYNTHETIC = get_dataset_info("synthetic")


def test_coco_predicts_other_and_its_53_stuff_classes():
    classes = semantic_classes.channel_classes(COCO, True)
    assert len(classes) == semantic_classes.num_channels(COCO, True) == 54
    assert classes[0] == semantic_classes.OTHER and classes[1:] == COCO.stuff_ids
    table = semantic_classes.target_table(COCO, True)
    assert np.all(table[list(COCO.thing_ids)] == 0)
    assert [table[c] for c in COCO.stuff_ids] == list(range(1, 54))
    assert table[COCO.ignore_label] == semantic_classes.NO_TARGET
    predicted = semantic_classes.prediction_table(COCO, True)
    assert predicted[0] == COCO.ignore_label and tuple(predicted[1:]) == COCO.stuff_ids


def test_cityscapes_predicts_all_19_classes():
    assert semantic_classes.channel_classes(CITYSCAPES, False) == tuple(range(19))
    table = semantic_classes.target_table(CITYSCAPES, False)
    assert table.shape == (256,) and list(table[:19]) == list(range(19))
    assert np.all(table[19:] == semantic_classes.NO_TARGET)
    assert list(semantic_classes.prediction_table(CITYSCAPES, False)) == list(range(19))


def _label():
    """sky | a disc instance | a crowd of boxes | void, 4 x 8."""
    label = np.zeros((4, 8), np.int32)  # sky
    label[1:3, 1:3] = 3 * 1000 + 1
    label[0:2, 5:7] = 4 * 1000  # crowd
    label[3, 6:] = SYNTHETIC.ignore_panoptic_id
    return label


@pytest.mark.parametrize("other, sky, disc, crowd", [(False, 0, 3, 4), (True, 1, 0, 0)])
def test_targets_of_a_label(other, sky, disc, crowd):
    targets = PanopticFPNTargets(SYNTHETIC, semantic_other_class=other, max_instances=4)
    result = {k: np.asarray(v) for k, v in targets(tf.constant(_label())).items()}
    semantic = result[common.SEMANTIC_TARGET]
    assert semantic.dtype == np.int32
    assert semantic[0, 0] == sky and semantic[1, 1] == disc and semantic[0, 5] == crowd
    assert semantic[3, 7] == semantic_classes.NO_TARGET
    # The crowd is no detection target: one instance, box (x0, y0, x1, y1).
    assert list(result[gt.GT_VALID]) == [True, False, False, False]
    np.testing.assert_array_equal(result[gt.GT_BOXES][0], [1, 1, 3, 3])
    assert result[gt.GT_CLASSES][0] == 1 and result[gt.GT_PANOPTIC_IDS][0] == 3001
    np.testing.assert_array_equal(result[common.PANOPTIC_LABEL], _label())


def test_sampling_seeds_come_from_the_first_example():
    seeds = tf.constant([[1, 2], [3, 4]], tf.int32)
    first = sampling_seeds(seeds)
    assert first.rpn.dtype == tf.int32 and first.rpn.shape == (2,)
    assert not np.array_equal(first.rpn, first.roi)
    same = sampling_seeds(tf.constant([[1, 2], [5, 6]], tf.int32))
    np.testing.assert_array_equal(first.roi, same.roi)
    other = sampling_seeds(tf.constant([[1, 3], [3, 4]], tf.int32))
    assert not np.array_equal(first.roi, other.roi)
