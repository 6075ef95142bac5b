"""Running Python scripts from tests in their own process: a quiet environment
that finds the test modules, and the JSON report a check script prints last."""
import json
import os
import pathlib
import subprocess
import sys

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]
TESTS_DIR = PROJECT_ROOT / "tests"


def quiet_env(**extra):
    # tests/ on the path: Gin configs import test modules (toy.gin: toy_family).
    path = os.pathsep.join(p for p in (str(TESTS_DIR), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=path, **extra)
    env.pop("TF_CONFIG", None)
    return env


def script_report(script, *args, timeout=1800):
    """The JSON object a check script prints last (run in its own process, as
    scripts that set up logical devices before TensorFlow starts must be)."""
    result = subprocess.run([sys.executable, str(script), *map(str, args)],
                            capture_output=True, text=True, timeout=timeout,
                            env=quiet_env(), cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])
