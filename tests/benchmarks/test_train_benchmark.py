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
    assert train.main(["--backbone", backbone, "--input_size", "65", "97", "--bfloat16",
                       "--batch_size", "1", "--warmup", "1", "--repeats", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    result = report["backbones"][backbone]
    names = ("uncompiled", "compiled", "uncompiled_bfloat16", "compiled_bfloat16")
    for name in names:
        assert result[name]["median_s_per_step"] > 0
        assert result[name]["examples_per_s"] == pytest.approx(
            1 / result[name]["median_s_per_step"], rel=0.01)
    # Both loops train the same model on the same batch; their first losses differ
    # by the dropout masks only (XLA draws its own), so they are merely reported.
    # tests/training/test_distribution.py checks the compiled step's numbers.
    for name in names:
        assert 0 < result[name]["first_total_loss"] < float("inf")
    for name in names[1:]:
        assert result[f"{name}_speedup"] == pytest.approx(
            result["uncompiled"]["median_s_per_step"] / result[name]["median_s_per_step"],
            rel=0.01)
    # bfloat16 rounds the forward pass: the same weights give another first loss.
    assert result["uncompiled_bfloat16"]["first_total_loss"] != result["uncompiled"][
        "first_total_loss"]
