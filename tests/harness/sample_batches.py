"""Small copies of the sample batch for fast runs on the tiny models."""

import shutil
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fantasy-items"
# Where the sample's distribution settings (exports beyond the package) begin.
DISTRIBUTION = "# Distribution:"


def make_batch(root: Path, rows: int = 4, variations: int = 1, references: bool = True, name: str = "demo") -> Path:
    """A copy of the sample batch cut down to `rows` rows, for fast runs on the tiny models, exporting
    the package only (its default `exports`): tests append the exports they are about."""
    folder = root / name
    folder.mkdir(parents=True)
    lines = (EXAMPLE / "batch.csv").read_text().splitlines()
    (folder / "batch.csv").write_text("\n".join(lines[: rows + 1]) + "\n")
    settings = (EXAMPLE / "batch.yaml").read_text().split(DISTRIBUTION)[0]
    settings = settings.replace("name: fantasy-items", f"name: {name}")
    settings = settings.replace("variations: 2", f"variations: {variations}").replace("steps: 4", "steps: 2")
    (folder / "batch.yaml").write_text(settings)
    if references:
        shutil.copytree(EXAMPLE / "references", folder / "references")
    return folder
