"""`assetql validate --estimate`: images, device time and cost before anything runs, with its basis."""

from assetql_dagster.cli import main
from assetql_dagster.domain.costs import DEFAULT_PRICES
from assetql_dagster.pipeline.launching import SECONDS_PER_IMAGE_STEP


def test_validate_estimate_prints_images_time_cost_and_the_basis(batch_factory, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    prices = tmp_path / "prices.yaml"
    prices.write_text("device_hour: {a10g: 2.0}\n")
    monkeypatch.setenv("ASSETQL_PRICES", str(prices))
    folder = batch_factory(rows=3, variations=2)
    assert main(["validate", "--estimate", str(folder), "--data-dir", str(tmp_path / "data")]) == 0
    out = capsys.readouterr().out.splitlines()
    # No finished run on this instance: the documented per-step figure of a tiny model (steps: 2),
    # priced on the GPU kind (the generator's device is "auto").
    seconds = 6 * 2 * SECONDS_PER_IMAGE_STEP["tiny"]
    assert f"estimate: 6 image(s), {seconds:.1f} s of a10g time, {seconds * 2.0 / 3600:.4f} USD" in out
    assert any(line.startswith("  basis: estimated: 0.01 s per image step for a tiny model") for line in out)
    bedrock = next(line for line in out if line.split()[:1] == ["bedrock"])
    assert bedrock.split()[-1] == f"{6 * DEFAULT_PRICES.remote_call['bedrock']:.4f}"


def test_validate_without_estimate_prints_no_estimate(batch_factory, capsys):
    assert main(["validate", str(batch_factory(rows=1))]) == 0
    assert "estimate:" not in capsys.readouterr().out
