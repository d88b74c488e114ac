import pytest

from assetql_dagster.domain.progress import ImageProgress


def test_line_shows_done_rate_and_eta_then_done():
    progress = ImageProgress(total=64, started=100.0, done_by_shard={"0": 25, "1": 7})
    assert progress.done == 32
    assert progress.line(now=104.0) == "32/64 images · 8.0 img/s · ETA 4 s"
    progress.done_by_shard.update({"1": 25, "2": 14})
    assert progress.line(now=108.0) == "64/64 images · 8.0 img/s · done"


def test_no_rate_yet_means_no_eta():
    assert ImageProgress(total=10, started=5.0).line(now=5.0) == "0/10 images · 0.0 img/s"


@pytest.mark.parametrize("shards", [{}, {"0": 3, "12": 9}])
def test_state_survives_its_tag_text(shards):
    progress = ImageProgress(total=12, started=1.5, done_by_shard=shards)
    assert ImageProgress.parse(progress.dump()) == progress
