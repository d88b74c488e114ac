"""`assetql pools`: the pools AssetQL's steps claim, and `--apply` sizing the declared remote pools on the instance."""

import dagster as dg

from assetql_dagster.cli import main
from assetql_dagster.defs.gpu import REMOTE_POOLS_ENV

SD35 = "bedrock:stability.sd3-5-large-v1:0"


def rows(printed: str) -> dict[str, list[str]]:
    """The table's rows by pool: (steps, declared, limit), split on the two-space column gaps (a
    sentence after the table has none)."""
    lines = printed.splitlines()
    assert lines[0].split() == ["pool", "steps", "declared", "limit"]
    return {cells[0]: cells[1:] for cells in ([c.strip() for c in line.split("  ") if c.strip()]
                                               for line in lines[1:] if "  " in line)}


def test_pools_lists_the_pools_and_apply_sets_the_declared_remote_limits(monkeypatch, capsys):
    monkeypatch.setenv(REMOTE_POOLS_ENV, f"sagemaker:sdxl-prod=4,{SD35}=2")
    with dg.instance_for_test() as instance:
        instance.event_log_storage.set_concurrency_slots("gpu", 2)
        assert main(["pools"]) == 0
        listed = rows(capsys.readouterr().out)
        assert listed == {
            "gpu": ["model steps", "-", "2"],
            "remote": ["shards of undeclared remote models", "-", "unlimited"],
            "remote:sagemaker:sdxl-prod": ["shards of sagemaker:sdxl-prod", "4", "unlimited"],
            f"remote:{SD35}": [f"shards of {SD35}", "2", "unlimited"],
        }
        assert "remote:sagemaker:sdxl-prod" not in instance.event_log_storage.get_concurrency_keys()  # listed only

        for _ in range(2):  # applying again sets the same limits
            assert main(["pools", "--apply"]) == 0
            printed = capsys.readouterr().out
            assert "applied the limits of 2 remote pool(s)" in printed
        assert {pool: cells[2] for pool, cells in rows(printed).items()} == {
            "gpu": "2", "remote": "unlimited", "remote:sagemaker:sdxl-prod": "4", f"remote:{SD35}": "2"}
        storage = instance.event_log_storage
        assert storage.get_concurrency_info("remote:sagemaker:sdxl-prod").slot_count == 4
        assert storage.get_concurrency_info(f"remote:{SD35}").slot_count == 2
        assert storage.get_concurrency_info("gpu").slot_count == 2  # only the declared remote pools are set


def test_pools_refuses_a_malformed_declaration(monkeypatch, capsys):
    monkeypatch.setenv(REMOTE_POOLS_ENV, "sagemaker:sdxl-prod=lots")
    with dg.instance_for_test() as instance:
        assert main(["pools", "--apply"]) == 1
        assert instance.event_log_storage.get_concurrency_keys() == set()
    assert (f"{REMOTE_POOLS_ENV} entry 'sagemaker:sdxl-prod=lots': SLOTS must be a whole number from 1 to 1000"
            in capsys.readouterr().err)


def test_pools_without_declarations_lists_the_shared_pools_and_applies_nothing(monkeypatch, capsys):
    monkeypatch.delenv(REMOTE_POOLS_ENV, raising=False)
    with dg.instance_for_test() as instance:
        assert main(["pools", "--apply"]) == 0
        assert instance.event_log_storage.get_concurrency_keys() == set()
    printed = capsys.readouterr().out
    assert set(rows(printed)) == {"gpu", "remote"}
    assert "no remote pools declared: set ASSETQL_REMOTE_POOLS (MODEL=SLOTS,...)" in printed
