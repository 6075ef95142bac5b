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


INFO_RECORD = "I0000 00:00:1796529568.052633    8823 port.cc:153] oneDNN custom operations\n"


@pytest.mark.parametrize("level, shown", [("2", False), ("0", True)])
def test_loader_drops_info_records_the_module_writes_to_fd2_when_quiet(tmp_path, level,
                                                                        shown):
    path = tmp_path / "noisy.py"
    noise = ("plain line\n" + INFO_RECORD).encode()
    path.write_text(f"import os\nos.write(2, {noise!r})\n")
    result = _run(_load_with_quiet_loader(path), TF_CPP_MIN_LOG_LEVEL=level)
    assert result.returncode == 0
    assert result.stderr == "plain line\n" + (INFO_RECORD if shown else "") + "after\n"


def test_loader_keeps_everything_when_the_import_fails(tmp_path):
    path = tmp_path / "noisy.py"
    path.write_text(f"import os\nos.write(2, {INFO_RECORD.encode()!r})\n"
                    "raise ImportError('broken library')\n")
    result = _run(_load_with_quiet_loader(path), TF_CPP_MIN_LOG_LEVEL="2")
    assert result.returncode == 0
    assert result.stderr == INFO_RECORD + "caught broken library\nafter\n"


def test_filter_log_drops_records_below_the_level_and_keeps_the_rest():
    from deeplab2.utils.quiet_tensorflow import filter_log

    text = (b"WARNING: All log messages before absl::InitializeLog() is called are "
            b"written to STDERR\n"
            b"I0000 00:00:1796529568.052633    8823 port.cc:153] oneDNN custom operations\n"
            b"I0000 00:00:1796529584.785013    8875 cpu_feature_guard.cc:227] This binary\n"
            b"To enable the following instructions: AVX2, rebuild TensorFlow.\n"
            b"W0000 00:00:1796529584.785013    8875 some.cc:1] a warning\n"
            b"E0000 00:00:1796529584.785013    8875 some.cc:2] an error\n"
            b"\n"
            b"/x.py:3: UserWarning: a Python warning\n")
    assert filter_log(text, 2) == (b"E0000 00:00:1796529584.785013    8875 some.cc:2] an error\n"
                                   b"\n/x.py:3: UserWarning: a Python warning\n")
    assert filter_log(text, 1).startswith(b"W0000")
    assert filter_log(text, 3) == b"\n/x.py:3: UserWarning: a Python warning\n"


def test_tensorflow_keeps_its_own_loader_and_imports_without_stderr():
    result = _run("""
        import importlib.resources
        import deeplab2
        import tensorflow as tf
        assert not type(tf.__loader__).__name__.startswith("_Quiet")
        assert tf.__spec__.loader is tf.__loader__
        assert any(importlib.resources.files("tensorflow").iterdir())
        print("ok")
        """)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok\n"
    closed = subprocess.run([sys.executable, "-c", "import deeplab2, tensorflow"],
                            stderr=subprocess.DEVNULL, timeout=300)
    assert closed.returncode == 0
    no_stderr = _run("""
        import sys
        sys.stderr = None
        import deeplab2
        import tensorflow
        print("ok")
        """)
    assert no_stderr.returncode == 0 and no_stderr.stdout == "ok\n"
