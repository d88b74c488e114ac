import os
import stat
from pathlib import Path

import pytest

import resources.storage as storage_module
from resources.storage import LocalStorage, check_key


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a/./b", "a//b", "..", "a\\b", "a/\x00b", "a/b\x7f", "a/"])
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
    assert storage.list_keys("missing") == [] and storage.sizes("missing") == {}
    assert storage.sizes("raw/b") == {"raw/b/one.png": 1, "raw/b/two.txt": 4}


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


def test_stored_files_get_the_usual_mode_for_new_files(tmp_path, monkeypatch):
    # Under umask 022 a new file is 0o644; mkstemp alone would leave it 0o600.
    monkeypatch.setattr(storage_module, "FILE_MODE", 0o666 & ~0o022)
    storage = LocalStorage(root=str(tmp_path))
    storage.write_bytes("exports/b/x.bin", b"x")
    source = tmp_path / "src.zip"
    source.write_bytes(b"zip")
    storage.write_file("exports/b/package.zip", source)
    for name in ("x.bin", "package.zip"):
        assert stat.S_IMODE(os.stat(tmp_path / "exports/b" / name).st_mode) == 0o644


def test_the_file_mode_follows_the_process_umask():
    old = os.umask(0)
    os.umask(old)
    assert storage_module.FILE_MODE == 0o666 & ~old


def test_a_process_under_umask_022_stores_files_with_mode_644(tmp_path):
    import subprocess
    import sys

    script = (
        "import os, stat, sys; os.umask(0o022)\n"
        "from resources.storage import LocalStorage\n"
        "s = LocalStorage(root=sys.argv[1]); s.write_bytes('exports/b/x.bin', b'x')\n"
        "print(oct(stat.S_IMODE(os.stat(s.local_path('exports/b/x.bin')).st_mode)))\n"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0o644"
