"""scripts/benchmark.py model --meta_architecture panoptic_fpn (upsnet, seamless): forward,
post-processing and total of a top-down model, and a Panoptic-DeepLab's total, timed
in one run."""
import json

import pytest

import strided_conv_backbone
from deeplab2.benchmarks import model

# Narrow heads and few proposals and detections: the benchmark's plumbing, not the network.
SMALL = ("fpn_channels=16", "box_fc_channels=32", "mask_channels=8",
         "rpn_pre_nms_top_k_test=50", "rpn_post_nms_top_k=50", "max_detections=8")


# The semantic head options of each family.
SEMANTIC = {"panoptic_fpn": ("semantic_channels=8", "semantic_groups=4"),
            "upsnet": ("semantic_dcn_channels=[8]",),
            "seamless": ("semantic_channels=8",)}


@pytest.mark.slow
@pytest.mark.parametrize("family", ["panoptic_fpn", "upsnet", "seamless"])
def test_top_down_benchmark_times_its_parts_against_panoptic_deeplab(capsys, family):
    # About a minute on two busy cores, mostly tracing and the baseline's XLA compile.
    backbone = strided_conv_backbone.register()
    options = [flag for option in SMALL + SEMANTIC[family] for flag in ("--option", option)]
    assert model.main(["--meta_architecture", family, "--backbone", backbone,
                       "--dataset", "synthetic", "--input_size", "60", "90",
                       "--warmup", "1", "--repeats", "1", *options]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["meta_architecture"], report["dataset"], report["jit_compile"]) == (
        family, "synthetic", False)
    assert report["architecture_options"]["detection_score_threshold"] == 0.0
    (run,) = report["runs"]
    assert run["requested_size"] == [60, 90]
    assert run["input_size"] == [64, 96]
    fpn = run[family]
    for part in ("forward", "postprocess", "total"):
        assert set(fpn[part]) == {"median_ms", "mean_ms", "min_ms"}
        assert all(value > 0 for value in fpn[part].values()), part
    assert 0 < fpn["valid_detections"] <= 8
    assert 0 <= fpn["instances_kept"] <= fpn["valid_detections"]
    assert 0 < run["postprocess_share_of_total"] < 1
    fraction = run["postprocess_fraction_of_forward"]
    assert fraction > 0
    assert run["meets_target"] == (fraction <= model.TARGET_POSTPROCESS_FRACTION_OF_FORWARD)
    baseline = run["baseline"]
    assert (baseline["meta_architecture"], baseline["backbone"]) == (
        "panoptic_deeplab", backbone)
    assert baseline["input_size"] == [65, 97]
    assert baseline["total"]["median_ms"] > 0
    assert run["total_latency_ratio"] == pytest.approx(
        fpn["total"]["median_ms"] / baseline["total"]["median_ms"], rel=0.02)
