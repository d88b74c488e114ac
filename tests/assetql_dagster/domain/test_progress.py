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


def test_eta_is_elapsed_times_remaining_over_done():
    progress = ImageProgress(total=40, started=100.0, done_by_shard={"0": 10})
    assert progress.eta(now=105.0) == pytest.approx(15.0)
    assert ImageProgress(total=4, started=1.0).eta(now=9.0) is None
    assert ImageProgress(total=4, started=1.0, done_by_shard={"0": 4}).eta(now=9.0) == 0.0


def test_the_counts_read_back_from_the_line():
    progress = ImageProgress(total=64, started=100.0, done_by_shard={"0": 25, "1": 7})
    again = ImageProgress.from_line(progress.line(now=104.0), started=100.0)
    assert (again.done, again.total, again.eta(now=104.0)) == (32, 64, pytest.approx(4.0))
    assert ImageProgress.from_line("queued", started=0.0) is None
