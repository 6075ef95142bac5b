"""UPSNet's parameter count (SPEC_TOP_DOWN.md section 5), without allocating
weights: R50 on COCO 46,076,784 (the paper's 46.1M), counted as the spec
counts Mask R-CNN (ResNet-50 convolutions without biases, no frozen batch-norm
affine parameters)."""
import importlib.util
import json
import pathlib

from deeplab2.data.dataset_info import resolve_dataset
from deeplab2.model import profile
from deeplab2.model.builder import DEFAULT_PIXEL_MEAN, DEFAULT_PIXEL_STD
from deeplab2.model.meta import make_config
from deeplab2.training import config as config_lib

SCRIPT = pathlib.Path(__file__).parents[3] / "scripts" / "profile_model.py"
CONFIGS = pathlib.Path(__file__).parents[3] / "deeplab2" / "configs"
R50 = dict(backbone="resnet50", backbone_kwargs={"layout": "deeplab2"}, freeze_at=0)
MASK_RCNN_COCO = 44_343_216  # 80 classes, detectron2's layout
GLOBAL_CONTEXT = 2048 * 256 + 256
# Offset convs: 9 * C * 18 + 18 per DCN layer of C input channels.
DCN_COCO = ((9 * 256 * 256 + 256 + 9 * 256 * 18 + 18) + (9 * 256 * 128 + 128 + 9 * 256 * 18 + 18)
            + (9 * 128 * 128 + 128 + 9 * 128 * 18 + 18))
SEMANTIC_PREDICTOR_COCO = 4 * 128 * 133 + 133
BACKGROUND_OUTPUTS = 4 * (1024 + 1) + (256 + 1)  # box deltas and mask of class 0


def test_coco_upsnet_r50_counts_the_papers_46_1m():
    result = profile.profile_model((128, 128), "upsnet", dataset="coco", **R50)
    assert result["params"] == (MASK_RCNN_COCO + GLOBAL_CONTEXT + DCN_COCO
                                + SEMANTIC_PREDICTOR_COCO + BACKGROUND_OUTPUTS) == 46_076_784


def test_cityscapes_upsnet_has_two_dcn_layers_and_no_global_context():
    # 8 thing classes (9-way classifier, 36 deltas, 9 masks with background), 19 classes.
    mask_rcnn = MASK_RCNN_COCO - (1024 + 1) * (81 - 9) - (1024 + 1) * (320 - 36) - (256 + 1) * (80 - 9)
    dcn = (9 * 256 * 128 + 128 + 9 * 256 * 18 + 18) + (9 * 128 * 128 + 128 + 9 * 128 * 18 + 18)
    result = profile.profile_model((128, 256), "upsnet", dataset="cityscapes", **R50)
    assert result["params"] == mask_rcnn + dcn + 4 * 128 * 19 + 19


def test_the_profile_script_prints_the_upsnet_count(capsys):
    spec = importlib.util.spec_from_file_location("profile_model", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main(["--meta_architecture", "upsnet", "--backbone", "resnet50",
                 "--input_size", "128", "128", "--dataset", "coco", "--json",
                 "--option", 'backbone_kwargs={"layout": "deeplab2"}', "--option", "freeze_at=0"])
    result = json.loads(capsys.readouterr().out)
    assert result["params"] == 46_076_784


def test_the_paper_configs_resolve_the_papers_loss_weights():
    """Paper 001 section 4: lambda_sem 0.2 and lambda_pan 0.1 on COCO, 1.0 and
    0.5 on Cityscapes; COCO's semantic head has three DCN layers and the
    global context."""
    expected = {"coco": ([256, 128, 128], True, 0.2, 0.1),
                "cityscapes": ([128, 128], False, 1.0, 0.5)}
    for dataset, values in expected.items():
        options = config_lib.model_options(str(CONFIGS / dataset / "upsnet_r50.gin"))
        config = make_config(options.pop("meta_architecture"),
                             resolve_dataset(options.pop("dataset")),
                             output_stride=options.pop("output_stride"),
                             crop_size=options.pop("crop_size"),
                             pixel_mean=DEFAULT_PIXEL_MEAN, pixel_std=DEFAULT_PIXEL_STD,
                             architecture=options, postprocess=None)
        arch = config.architecture
        assert (arch["semantic_dcn_channels"], arch["global_context"],
                arch["semantic_loss_weight"], arch["panoptic_loss_weight"]) == values, dataset
