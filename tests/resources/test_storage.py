import pytest

from resources.storage import LocalStorage, check_key


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a/./b", "a//b", "..", "a\\b", "a/\x00b", "a/"])
def test_keys_that_escape_or_are_ambiguous_are_rejected(key):
    with pytest.raises(ValueError, match="storage key"):
        check_key(key)


def test_round_trip_listing_and_uris(tmp_path):
    storage = LocalStorage(root=str(tmp_path))
    uri = storage.write_bytes("raw/b/one.png", b"1")
    storage.write_text("raw/b/two.txt", "zwei")
    assert uri == (tmp_path / "raw/b/one.png").as_uri() == storage.uri("raw/b/one.png") == storage.link("raw/b/one.png", 3600)
    assert storage.read_bytes("raw/b/one.png") == b"1" and storage.read_text("raw/b/two.txt") == "zwei"
    assert storage.exists("raw/b/one.png") and not storage.exists("raw/b/three.png")
    assert storage.list_keys("raw") == ["raw/b/one.png", "raw/b/two.txt"]
    assert storage.list_keys("missing") == []


def test_writes_replace_atomically_and_leave_no_temp_files(tmp_path):
    storage = LocalStorage(root=str(tmp_path / "data"))
    source = tmp_path / "package.zip"
    source.write_bytes(b"zip bytes" * 1000)
    storage.write_bytes("exports/b/x.bin", b"old")
    storage.write_bytes("exports/b/x.bin", b"new")
    storage.write_file("exports/b/package.zip", source)
    storage.write_file("exports/b/package.zip", source)
    assert storage.read_bytes("exports/b/x.bin") == b"new"
    assert storage.read_bytes("exports/b/package.zip") == source.read_bytes()
    assert sorted(p.name for p in (tmp_path / "data/exports/b").iterdir()) == ["package.zip", "x.bin"]


def test_a_failed_write_keeps_the_previous_object(tmp_path):
    storage = LocalStorage(root=str(tmp_path))
    storage.write_bytes("raw/b/img.png", b"complete")

    def broken(fh):
        fh.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        storage._write_atomically("raw/b/img.png", broken)
    assert storage.read_bytes("raw/b/img.png") == b"complete"
    assert [p.name for p in (tmp_path / "raw/b").iterdir()] == ["img.png"]
