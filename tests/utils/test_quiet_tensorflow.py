"""Quiet TensorFlow loading: fd 2 silenced while the module executes, unless
TF_CPP_MIN_LOG_LEVEL is 0; exceptions kept."""
import os
import subprocess
import sys
import textwrap

import pytest


def _run(code, **env):
    environment = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    environment.update(env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=environment, timeout=300)


def test_importing_tensorflow_after_deeplab2_prints_nothing():
    result = _run("""
        import sys
        import deeplab2
        import tensorflow as tf
        print(int(tf.constant(2) + 1))
        print("own line", file=sys.stderr)
        """)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "3\n"
    assert result.stderr == "own line\n"


def _load_with_quiet_loader(path):
    """Code executing the module at `path` through the quiet loader."""
    return f"""
        import importlib.util, sys
        from deeplab2.utils import quiet_tensorflow
        spec = importlib.util.spec_from_file_location("noisy", {str(path)!r})
        spec.loader = quiet_tensorflow._QuietLoader(spec.loader)
        try:
            spec.loader.exec_module(importlib.util.module_from_spec(spec))
        except ImportError as error:
            print("caught", error, file=sys.stderr)
        print("after", file=sys.stderr)
        """


@pytest.mark.parametrize("level, shown", [("2", False), ("0", True)])
def test_loader_hides_what_the_module_writes_to_fd2_when_quiet(tmp_path, level, shown):
    path = tmp_path / "noisy.py"
    path.write_text("import os\nos.write(2, b'C++ INFO line\\n')\n")
    result = _run(_load_with_quiet_loader(path), TF_CPP_MIN_LOG_LEVEL=level)
    assert result.returncode == 0
    assert result.stderr == ("C++ INFO line\n" if shown else "") + "after\n"


def test_loader_keeps_exceptions_and_restores_stderr(tmp_path):
    path = tmp_path / "noisy.py"
    path.write_text("import os\nos.write(2, b'C++ INFO line\\n')\n"
                    "raise ImportError('broken library')\n")
    result = _run(_load_with_quiet_loader(path), TF_CPP_MIN_LOG_LEVEL="2")
    assert result.returncode == 0
    assert result.stderr == "caught broken library\nafter\n"
