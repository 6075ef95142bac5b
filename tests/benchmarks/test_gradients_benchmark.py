"""scripts/benchmark.py gradients: each rewritten gradient equals the one it replaces."""
import json

import pytest

from deeplab2.benchmarks import gradients


def test_every_case_reports_equal_gradients_and_its_speedup(capsys):
    assert gradients.main(["--scale", "0.25", "--repeats", "1", "--warmup", "0"]) == 0
    report = json.loads(capsys.readouterr().out)
    cases = report["cases"]
    assert list(cases) == list(gradients.CASES)
    assert {name: case["baseline"] for name, case in cases.items()} == {
        "roi_align": "gather_autodiff", "atrous": "tensorflow", "pointwise": "tensorflow",
        "deformable": "tap_by_tap"}
    # The shapes of the docstring, scaled by a quarter (the atrous map's size
    # excepted: every tap at rate 9 reads inside it).
    assert cases["roi_align"]["inputs"] == [[1, 14, 20, 33]]
    assert cases["atrous"]["inputs"] == [[1, 17, 33, 512], [3, 3, 512, 64]]
    assert cases["deformable"]["inputs"] == [[2, 8, 12, 8]]
    for name, case in cases.items():
        assert case["gradient_relative_difference"] < 1e-5, name
        assert case["speedup"] == pytest.approx(case["baseline_ms"] / case["deeplab2_ms"],
                                                rel=0.06), name
        assert 0 < case["baseline_forward_ms"] and 0 < case["deeplab2_forward_ms"], name


def test_unknown_case_is_refused(capsys):
    with pytest.raises(SystemExit):
        gradients.main(["--cases", "winograd"])
    assert "invalid choice: 'winograd'" in capsys.readouterr().err
