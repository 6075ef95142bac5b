"""The package's layering: data -> model -> training; model -> inference ->
evaluation / export. What serves a trained model never imports the trainer."""
import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "deeplab2"
# Packages that must not import deeplab2.training (or each other's later stages).
FORBIDDEN = {
    "data": ("deeplab2.model", "deeplab2.training", "deeplab2.inference",
             "deeplab2.evaluation", "deeplab2.export"),
    "model": ("deeplab2.training", "deeplab2.inference", "deeplab2.evaluation",
              "deeplab2.export"),
    "inference": ("deeplab2.training", "deeplab2.evaluation", "deeplab2.export"),
    "evaluation": ("deeplab2.training", "deeplab2.export"),
    "export": ("deeplab2.training", "deeplab2.evaluation"),
}


def _imports(path: pathlib.Path):
    """Modules a file imports, at any depth (function-level imports included)."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_against_the_data_path(package):
    offending = [f"{path.relative_to(PACKAGE.parent)} imports {name}"
                 for path in sorted((PACKAGE / package).rglob("*.py"))
                 for name in _imports(path)
                 if name.startswith(FORBIDDEN[package])]
    assert offending == []


def test_the_check_sees_imports():
    assert "deeplab2.model.meta" in set(_imports(PACKAGE / "inference" / "predictor.py"))
