"""Pricing arithmetic, price overrides, and the daily budget's marks."""

import pytest

from assetql_dagster.domain.costs import (
    DEFAULT_PRICES,
    GB,
    PriceTable,
    budget_level,
    comparison,
    estimate_usd,
    parse_budget,
    provider,
)


def test_device_time_remote_calls_and_storage_are_priced_from_the_table():
    prices = PriceTable(device_hour={"cpu": 0.36, "h100": 7.2}, remote_call={"bedrock": 0.08}, storage_gb_month=0.02,
                        gpu_kind="h100")
    assert prices.seconds_usd(3600, "cpu") == pytest.approx(0.36)
    assert prices.seconds_usd(10, prices.device_kind("cuda:1")) == pytest.approx(0.02)
    assert prices.device_kind("cpu") == "cpu"
    assert prices.calls_usd(25, "bedrock") == pytest.approx(2.0)
    assert prices.storage_usd(5 * GB, months=2) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="no hourly price for device kind 'a100'; priced kinds: cpu, h100"):
        prices.seconds_usd(1, "a100")
    with pytest.raises(ValueError, match="no per-call price for provider 'sagemaker'"):
        prices.calls_usd(1, "sagemaker")


def test_overrides_replace_single_prices_and_are_checked():
    changed = DEFAULT_PRICES.with_overrides({"device_hour": {"h100": 3.5}, "storage_gb_month": 0.021, "gpu_kind": "l4"})
    assert changed.device_hour["h100"] == 3.5 and changed.device_hour["a10g"] == DEFAULT_PRICES.device_hour["a10g"]
    assert (changed.storage_gb_month, changed.gpu_kind) == (0.021, "l4")
    with pytest.raises(ValueError, match=r"unknown price setting\(s\) \['gpu_hours'\]"):
        DEFAULT_PRICES.with_overrides({"gpu_hours": {}})
    with pytest.raises(ValueError, match="price device_hour.'v100' names no known kind; expected one of cpu, a10g"):
        DEFAULT_PRICES.with_overrides({"device_hour": {"v100": 2.0}})
    with pytest.raises(ValueError, match="price remote_call.bedrock must be a number of USD ≥ 0, got -1"):
        DEFAULT_PRICES.with_overrides({"remote_call": {"bedrock": -1}})
    with pytest.raises(ValueError, match="gpu_kind 'cpu' must be one of a10g, l4, a100, h100"):
        DEFAULT_PRICES.with_overrides({"gpu_kind": "cpu"})


def test_remote_models_are_priced_per_call_and_local_ones_by_device_time():
    assert (provider("sagemaker:sd-endpoint"), provider("bedrock:stability.sd3-5-large-v1:0")) == ("sagemaker", "bedrock")
    assert provider("tiny") == provider("C:/models/sdxl") == "local"
    assert estimate_usd(10, 2.0, "bedrock:stability.sd3-5-large-v1:0", DEFAULT_PRICES, "a10g") == pytest.approx(0.8)
    assert estimate_usd(10, 36.0, "sdxl", DEFAULT_PRICES, "a10g") == pytest.approx(0.101)


def test_the_comparison_scales_measured_time_by_relative_speed_and_lists_cheapest_first():
    prices = PriceTable(device_hour={"a10g": 1.0, "h100": 6.6}, remote_call={"bedrock": 0.08}, storage_gb_month=0.0)
    rows = comparison(100, 3.6, "a10g", prices)
    assert [kind for kind, _, _ in rows] == ["a10g", "h100", "bedrock"]
    assert rows[0] == ("a10g", pytest.approx(360.0), pytest.approx(0.1))
    # An H100 is 3.3 times an A10G: 360 s become 109 s, at 6.6 USD an hour.
    assert rows[1] == ("h100", pytest.approx(360 / 3.3), pytest.approx(360 / 3.3 * 6.6 / 3600))
    assert rows[2] == ("bedrock", 0.0, pytest.approx(8.0))


def test_the_budget_alerts_at_80_percent_and_holds_at_100():
    assert [budget_level(spent, 50.0) for spent in (0, 39.99, 40.0, 49.99, 50.0, 80)] == [
        "ok", "ok", "alert", "alert", "hold", "hold"]
    assert budget_level(1e9, None) == "ok"
    assert parse_budget(" 50 ") == 50.0 and parse_budget("") is None and parse_budget(None) is None
    for wrong in ("fifty", "0", "-5"):
        with pytest.raises(ValueError, match=f"daily budget '{wrong}' must be a number of USD > 0"):
            parse_budget(wrong)
