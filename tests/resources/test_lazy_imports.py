import ast
import subprocess
import sys
from pathlib import Path

ML_FRAMEWORKS = ("torch", "diffusers", "open_clip", "transformers")
REPO_ROOT = Path(__file__).resolve().parents[2]


def test_importing_the_code_location_loads_no_ml_framework():
    # A fresh interpreter, since this test process has already imported torch through other tests.
    code = f"import assetql_dagster.definitions, sys; print(sorted(m for m in {ML_FRAMEWORKS!r} if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert ast.literal_eval(result.stdout) == []
