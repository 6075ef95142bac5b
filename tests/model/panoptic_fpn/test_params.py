"""Parameter counts of SPEC_TOP_DOWN.md section 5, counted without allocating weights.

The spec counts Mask R-CNN R50-FPN as the papers do: every convolution of the
ResNet-50 (no conv biases, torchvision layout: the "deeplab2" layout here),
batch norm frozen (its affine parameters not counted). So the counts take
`freeze_at=0`; the default `freeze_at=2` leaves the stem and res2 out of the
trainable parameters, and the keras layout adds conv biases.
"""
from deeplab2.model import profile

R50 = dict(backbone="resnet50", backbone_kwargs={"layout": "deeplab2"}, freeze_at=0)
MASK_RCNN_COCO = 44_343_216  # R50 23,454,912 + FPN + RPN + box + mask heads, 80 classes
SEMANTIC_COCO = 1_630_774  # 53 stuff + 'other'
SEMANTIC_CITYSCAPES = 1_626_259  # 19 classes
# Stem 7x7x3x64 and res2's three bottlenecks (with the projection).
STEM_AND_RES2 = 9_408 + 73_728 + 2 * 69_632
RESNET50_CONV_BIASES = 26_560


def _params(size, dataset, **architecture):
    return profile.profile_model(size, "panoptic_fpn", dataset=dataset, **architecture)


def test_coco_panoptic_fpn_r50_counts_as_the_spec():
    result = _params((800, 1344), "coco", **R50)
    assert result["params"] == MASK_RCNN_COCO + SEMANTIC_COCO == 45_973_990
    assert result["madds"] > 0


def test_cityscapes_counts_8_thing_classes_and_19_semantic():
    # Box classifier 9-way instead of 81, 32 deltas instead of 320, 8 masks instead of 80.
    fewer_classes = (1024 + 1) * (81 - 9) + (1024 + 1) * (320 - 32) + (256 + 1) * (80 - 8)
    result = _params((128, 256), "cityscapes", **R50)
    assert result["params"] == MASK_RCNN_COCO - fewer_classes + SEMANTIC_CITYSCAPES == 45_581_971


def test_what_the_defaults_train_and_count():
    frozen = _params((128, 128), "coco", backbone="resnet50",
                     backbone_kwargs={"layout": "deeplab2"})
    assert frozen["params"] == MASK_RCNN_COCO + SEMANTIC_COCO - STEM_AND_RES2
    keras_layout = _params((128, 128), "coco", backbone="resnet50", freeze_at=0)
    assert keras_layout["params"] == MASK_RCNN_COCO + SEMANTIC_COCO + RESNET50_CONV_BIASES
