"""scripts/benchmark.py separable: every formulation computes the same convolution."""
import json

import pytest

from deeplab2.benchmarks import separable


def test_formulations_agree_and_rates_follow_the_times(capsys):
    assert separable.main(["--shape", "9", "13", "8", "--filters", "4", "--repeats", "1",
                           "--warmup", "0"]) == 0
    report = json.loads(capsys.readouterr().out)
    results = report["formulations"]
    assert set(results) == {"depthwise", "depthwise_xla", "depthwise_shifts_xla", "pointwise",
                            "separable", "separable_xla", "separable_bfloat16",
                            "backbone_conv"}
    for name, result in results.items():
        if name == "backbone_conv":
            continue
        # float32 formulations agree to rounding; bfloat16 to its 8-bit mantissa.
        assert result["relative_error"] < (3e-2 if "bfloat16" in name else 1e-5), name
        gmacs = report["gmacs"][name.split("_")[0]]
        assert result["gmac_per_s"] == pytest.approx(gmacs / result["median_ms"] * 1e3,
                                                     rel=0.1, abs=0.2), name
    assert report["gmacs"]["separable"] == pytest.approx(
        report["gmacs"]["depthwise"] + report["gmacs"]["pointwise"], abs=0.01)
