"""CI runs exactly what the README tells a developer to run for the tests."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    [command] = re.findall(r"^(\S+)\s+# installs .*then runs the tests$", readme, flags=re.MULTILINE)
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    # From the repository root, as the README's commands are written.
    assert ci[-2:] == ['cd "$(dirname "$0")/.."', command]
    assert (ROOT / command).is_file()
