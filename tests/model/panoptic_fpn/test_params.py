"""Parameter counts of SPEC_TOP_DOWN.md section 5, counted without allocating weights.

The spec counts Mask R-CNN R50-FPN as the papers do: every convolution of the
ResNet-50 (no conv biases, torchvision layout: the "deeplab2" layout here),
frozen or not, and no frozen batch-norm affine parameters. The keras layout,
the default for its ImageNet weights, adds conv biases.
"""
import importlib.util
import json
import pathlib

from deeplab2.model import profile

SCRIPT = pathlib.Path(__file__).parents[3] / "scripts" / "profile_model.py"

R50 = dict(backbone="resnet50", backbone_kwargs={"layout": "deeplab2"}, freeze_at=0)
MASK_RCNN_COCO = 44_343_216  # R50 23,454,912 + FPN + RPN + box + mask heads, 80 classes
SEMANTIC_COCO = 1_630_774  # 53 stuff + 'other'
SEMANTIC_CITYSCAPES = 1_626_259  # 19 classes
RESNET50_CONV_BIASES = 26_560
RESNET50_BN_CHANNELS = 26_560  # every conv has a BN of its channels


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


def test_frozen_convolutions_count_and_frozen_batch_norms_do_not():
    frozen = _params((128, 128), "coco", backbone="resnet50",
                     backbone_kwargs={"layout": "deeplab2"})  # freeze_at 2, frozen BN
    assert frozen["params"] == MASK_RCNN_COCO + SEMANTIC_COCO
    keras_layout = _params((128, 128), "coco", backbone="resnet50", freeze_at=0)
    assert keras_layout["params"] == MASK_RCNN_COCO + SEMANTIC_COCO + RESNET50_CONV_BIASES
    # Trainable BN adds its affine parameters: 2 per channel of the 53 BNs.
    trainable_bn = _params((128, 128), "coco", backbone="resnet50", frozen_bn=False,
                           backbone_kwargs={"layout": "deeplab2"}, freeze_at=0)
    assert trainable_bn["params"] - frozen["params"] == 2 * RESNET50_BN_CHANNELS


def test_the_profile_script_counts_coco_for_133_classes(capsys):
    spec = importlib.util.spec_from_file_location("profile_model", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main(["--meta_architecture", "panoptic_fpn", "--backbone", "resnet50",
                 "--input_size", "100", "130", "--num_classes", "133", "--json",
                 "--option", 'backbone_kwargs={"layout": "deeplab2"}'])
    result = json.loads(capsys.readouterr().out)
    assert result["params"] == MASK_RCNN_COCO + SEMANTIC_COCO
    assert result["dataset"] == "coco"
    assert result["input_size"] == [128, 160]  # padded to multiples of 32
