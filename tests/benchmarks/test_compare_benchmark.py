"""scripts/benchmark.py compare: the families' parameters, multiply-adds, forward and
post-processing latency, in one run."""
import json

import pytest

import strided_conv_backbone
from deeplab2.benchmarks import compare
from deeplab2.model import profile

# Narrow heads and few proposals and detections: the benchmark's plumbing, not the network.
TOP_DOWN = {"fpn_channels": 16, "box_fc_channels": 32, "mask_channels": 8,
            "rpn_pre_nms_top_k_test": 50, "rpn_post_nms_top_k": 50, "max_detections": 8}
SLIM = {"panoptic_deeplab": {"semantic_aspp_channels": 16, "semantic_decoder_channels": 16,
                             "semantic_head_channels": 16, "instance_aspp_channels": 16,
                             "instance_decoder_channels": 16, "instance_head_channels": 8},
        "panoptic_fpn": {**TOP_DOWN, "semantic_channels": 8, "semantic_groups": 4},
        "upsnet": {**TOP_DOWN, "semantic_dcn_channels": [8]},
        "seamless": {**TOP_DOWN, "semantic_channels": 8}}
# The detection threshold the benchmark sets where a family has one.
LOAD = {family: {"detection_score_threshold": 0.0} for family in ("panoptic_fpn", "upsnet", "seamless")}


@pytest.mark.slow
def test_compare_reports_counts_and_latencies_of_each_family(capsys):
    # About 25 s on two cores, mostly tracing and Panoptic-DeepLab's XLA compile.
    backbone = strided_conv_backbone.register()
    options = [f"--option={family}:{key}={json.dumps(value)}"
               for family, slim in SLIM.items() for key, value in slim.items()]
    assert compare.main(["--families", *SLIM, "--backbone", backbone,
                         "--input_size", "64", "128", "--warmup", "1", "--repeats", "2",
                         *options]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert (report["benchmark"], report["backbone"], report["dataset"]) == (
        "compare", backbone, "cityscapes")
    assert (report["requested_size"], report["batch_size"], report["repeats"]) == (
        [64, 128], 1, 2)
    assert report["baseline"] == "panoptic_deeplab"
    assert list(report["families"]) == list(SLIM)
    sizes = {"panoptic_deeplab": [65, 129], "panoptic_fpn": [64, 128], "upsnet": [64, 128],
             "seamless": [64, 128]}
    for family, record in report["families"].items():
        assert record["input_size"] == sizes[family]
        # The options set: the slim ones, and the worst-case load where the family has it.
        architecture = dict(SLIM[family], **LOAD.get(family, {}))
        assert record["options"]["architecture"] == architecture
        # An independent count: profile_model builds the same config without weights.
        counted = profile.profile_model((64, 128), meta_architecture=family,
                                        dataset="cityscapes", backbone=backbone,
                                        **architecture)
        assert (record["params"], record["madds"]) == (counted["params"], counted["madds"])
        assert record["params_m"] == counted["params_m"]
        for part in ("forward", "postprocess"):
            assert set(record[part]) == {"median_ms", "mean_ms", "min_ms"}
            assert 0 < record[part]["min_ms"] <= record[part]["median_ms"], (family, part)
        assert record["instances"] >= 0
    deeplab = report["families"]["panoptic_deeplab"]
    assert deeplab["forward_ratio"] == 1
    assert deeplab["options"]["postprocess"] == {}
    assert deeplab["valid_detections"] is None
    for family in LOAD:
        record = report["families"][family]
        assert record["forward_ratio"] == pytest.approx(
            record["forward"]["median_ms"] / deeplab["forward"]["median_ms"], rel=0.02)
        # Every detection of random weights kept and fused.
        assert record["options"]["postprocess"] == {"score_threshold": 0.0}
        assert record["valid_detections"] == 8
    # The same numbers as a Markdown table on stderr.
    table = captured.err.strip().splitlines()
    assert table[2].startswith("| family |") and len(table) == 4 + len(SLIM)
    seamless = report["families"]["seamless"]
    assert table[-1].startswith(f"| seamless | 64x128 | {seamless['params_m']:.2f} |")


@pytest.mark.parametrize("families, message", [
    (["panoptic_deeplab", "panoptic_dlab"], "unknown family 'panoptic_dlab'; compare runs "
                                            "panoptic_deeplab, panoptic_fpn, upsnet, seamless"),
    (["not_yet_written"], "family 'not_yet_written' is not registered (registered: "),
])
def test_an_unknown_family_is_a_one_line_error(capsys, monkeypatch, families, message):
    # A family of the list that no module registers yet (as seamless was).
    monkeypatch.setattr(compare, "FAMILIES", compare.FAMILIES + ("not_yet_written",))
    assert compare.main(["--families", *families]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith(f"error: {message}")
