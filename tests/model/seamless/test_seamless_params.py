"""Seamless's parameter count (SPEC_TOP_DOWN.md section 5), without allocating
weights: R50 on Cityscapes 51,434,387 (the paper's 51.43M), batch norm affine
parameters included (the backbone's trained, `frozen_bn=False`), batch norm
statistics not; and the Mapillary Vistas variant's additions."""
import importlib.util
import json
import pathlib

from deeplab2.model import profile

SCRIPT = pathlib.Path(__file__).parents[3] / "scripts" / "profile_model.py"
R50 = dict(backbone="resnet50", backbone_kwargs={"layout": "deeplab2"}, freeze_at=0,
           frozen_bn=False)
# The spec's breakdown on Cityscapes (8 thing classes, 19 classes).
R50_WITH_BN = 23_508_032
FPN, P6 = 3_346_432, 4_719_104
RPN, BOX, MASK, SEMANTIC = 594_191, 13_939_753, 2_626_056, 2_700_819


def test_cityscapes_seamless_r50_counts_the_papers_51_43m():
    result = profile.profile_model((128, 256), "seamless", dataset="cityscapes", **R50)
    assert result["params"] == (R50_WITH_BN + FPN + P6 + RPN + BOX + MASK + SEMANTIC
                                ) == 51_434_387


def test_multiply_adds_at_1024x2048_are_the_papers_0_514_tera_within_20_percent():
    # Traced, not run: the backbone, FPN, RPN and semantic head at 1024 x 2048,
    # the box head on 1000 proposals and the mask head on 100 detections.
    result = profile.profile_model((1024, 2048), "seamless", dataset="cityscapes", **R50)
    assert result["params"] == 51_434_387
    assert abs(result["madds"] / 0.514e12 - 1) <= 0.2, result["madds"]


def test_vistas_adds_p7_five_anchor_ratios_and_its_classes():
    # 37 thing and 65 classes; P7 is a stride-2 3x3 conv on P6 with batch norm;
    # 5 anchors per position: 5 objectness logits and 20 deltas.
    things, classes = 37, 65
    expected = (R50_WITH_BN + FPN + P6 + (9 * 256 * 256 + 2 * 256)
                + RPN + (5 - 3) * 5 * (256 + 1)
                + BOX + (1024 + 1) * ((things + 1) - 9) + (1024 + 1) * 4 * (things - 8)
                + MASK + (256 + 1) * (things - 8)
                + SEMANTIC + (512 + 1) * (classes - 19))
    result = profile.profile_model((128, 128), "seamless", dataset="mapillary_vistas", **R50)
    assert result["params"] == expected


def test_the_profile_script_prints_the_seamless_count(capsys):
    spec = importlib.util.spec_from_file_location("profile_model", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main(["--meta_architecture", "seamless", "--backbone", "resnet50",
                 "--input_size", "128", "256", "--dataset", "cityscapes", "--json",
                 "--option", 'backbone_kwargs={"layout": "deeplab2"}', "--option", "freeze_at=0",
                 "--option", "frozen_bn=false"])
    result = json.loads(capsys.readouterr().out)
    assert result["params"] == 51_434_387
