"""What each channel of Panoptic FPN's semantic logits predicts (SPEC_TOP_DOWN.md section 2).

Two label spaces, chosen by the `semantic_other_class` option:
- with 'other' (COCO, paper 003 section 4.1): channel 0 is 'other', which every
  thing pixel targets (crowd included), and channel 1 + i is the dataset's
  i-th stuff class (`DatasetInfo.stuff_ids` order); COCO has 1 + 53 channels;
- without (Cityscapes): one channel per dataset class but the void one, in id
  order, things included (19 on Cityscapes, 133 on COCO whose class 0 is
  void); thing predictions are discarded at fusion.
Void pixels are no target (-1). At inference 'other' maps to the ignore label,
which never forms a stuff segment.
"""
from typing import Tuple

import numpy as np

from deeplab2.data.dataset_info import DatasetInfo

# Dataset class id standing for the 'other' channel.
OTHER = -1
# Semantic target of pixels without a target (void).
NO_TARGET = -1


def channel_classes(info: DatasetInfo, other_class: bool) -> Tuple[int, ...]:
    """The dataset class id of each channel, OTHER for the 'other' channel."""
    if other_class:
        return (OTHER,) + tuple(info.stuff_ids)
    return tuple(c for c in range(info.num_classes) if c != info.ignore_label)


def num_channels(info: DatasetInfo, other_class: bool) -> int:
    return len(channel_classes(info, other_class))


def target_table(info: DatasetInfo, other_class: bool) -> np.ndarray:
    """int32 [T]: the channel each dataset class id (and the ignore label) targets,
    NO_TARGET for void. T covers every class id and the ignore label."""
    table = np.full([max(info.num_classes, info.ignore_label + 1)], NO_TARGET, np.int32)
    for channel, class_id in enumerate(channel_classes(info, other_class)):
        if class_id != OTHER:
            table[class_id] = channel
    if other_class:
        table[list(info.thing_ids)] = 0
    table[info.ignore_label] = NO_TARGET
    return table


def prediction_table(info: DatasetInfo, other_class: bool) -> np.ndarray:
    """int32 [channels]: the dataset class id a channel's argmax predicts
    ('other' predicts the ignore label, i.e. void)."""
    return np.array([info.ignore_label if c == OTHER else c
                     for c in channel_classes(info, other_class)], np.int32)
