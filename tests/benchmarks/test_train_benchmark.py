"""scripts/benchmark.py train: both steps run on the same batch and are timed."""
import json

import pytest

import strided_conv_backbone
from deeplab2.benchmarks import train


@pytest.mark.slow
def test_train_benchmark_times_the_compiled_and_the_uncompiled_step(capsys):
    # The benchmark's plumbing on a four-layer backbone: its XLA compilation
    # takes seconds, a real backbone's minutes.
    backbone = strided_conv_backbone.register()
    assert train.main(["--backbone", backbone, "--input_size", "65", "97",
                       "--batch_size", "1", "--warmup", "1", "--repeats", "2"]) == 0
    result = json.loads(capsys.readouterr().out)["backbones"][backbone]
    # bfloat16 without the compiled steps (their XLA compilations are the slow part).
    assert train.main(["--backbone", backbone, "--input_size", "65", "97", "--bfloat16",
                       "--grappler", "--skip_compiled", "--batch_size", "1", "--warmup", "1",
                       "--repeats", "2"]) == 0
    mixed = json.loads(capsys.readouterr().out)["backbones"][backbone]
    # On this host without GPUs or TPUs the trainer's step runs without
    # Grappler; --grappler also times it with.
    assert set(mixed) == {"uncompiled", "uncompiled_bfloat16", "uncompiled_bfloat16_speedup",
                          "uncompiled_grappler", "uncompiled_grappler_speedup"}
    assert set(result) == {"uncompiled", "compiled", "compiled_speedup"}
    for report, names in ((result, ("uncompiled", "compiled")),
                          (mixed, ("uncompiled", "uncompiled_grappler")),
                          (mixed, ("uncompiled", "uncompiled_bfloat16"))):
        for name in names:
            assert report[name]["median_s_per_step"] > 0
            assert report[name]["examples_per_s"] == pytest.approx(
                1 / report[name]["median_s_per_step"], rel=0.01)
            # The loops train the same model on the same batch; their first losses
            # differ by the dropout masks (XLA draws its own) and the precision, so
            # they are merely reported. tests/training/test_distribution.py checks
            # the compiled step's numbers.
            assert 0 < report[name]["first_total_loss"] < float("inf")
        assert report[f"{names[1]}_speedup"] == pytest.approx(
            report["uncompiled"]["median_s_per_step"] / report[names[1]]["median_s_per_step"],
            rel=0.01)
    # Grappler rewrites the graph, not the computation: the same first loss.
    assert mixed["uncompiled_grappler"]["first_total_loss"] == pytest.approx(
        mixed["uncompiled"]["first_total_loss"], rel=1e-5)
    # bfloat16 rounds the forward pass: the same weights give another first loss.
    assert mixed["uncompiled_bfloat16"]["first_total_loss"] != mixed["uncompiled"][
        "first_total_loss"]


@pytest.mark.slow
def test_train_benchmark_times_a_top_down_family(capsys):
    """--meta_architecture builds that family's default model (here Panoptic
    FPN, whose loss has RPN, box, mask and semantic terms) and times its step."""
    assert train.main(["--meta_architecture", "panoptic_fpn", "--backbone",
                       "mobilenet_v3_small", "--input_size", "64", "96", "--skip_compiled",
                       "--batch_size", "1", "--warmup", "1", "--repeats", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["meta_architecture"] == "panoptic_fpn"
    step = report["backbones"]["mobilenet_v3_small"]["uncompiled"]
    assert step["median_s_per_step"] > 0
    # Five loss terms of about log(2), log(20) ... at initialization: well above
    # Panoptic-DeepLab's center MSE and offset L1 alone.
    assert 1.0 < step["first_total_loss"] < float("inf")


def test_a_deeplab2_config_is_a_panoptic_deeplab():
    with pytest.raises(SystemExit):
        train.parse_args(["--deeplab2_config", "resnet50_os32", "--meta_architecture", "upsnet"])
