import hashlib
import os
import socket
from pathlib import Path

import pytest
from PIL import Image

from assetql_dagster.domain import batch_loader, safe_files
from assetql_dagster.domain.batch_loader import (
    MAX_REFERENCE_BYTES,
    MAX_REFERENCE_PIXELS,
    check_references,
    compute_content_hash,
    load_batch,
)
from assetql_dagster.domain.errors import BatchValidationError

CSV = "variant_id,prompt\na1,a red fox\na2,a blue whale\n"


def make_batch(folder, csv=CSV, settings=None, references=("style.png",)):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "batch.csv").write_text(csv, encoding="utf-8")
    if settings is not None:
        (folder / "batch.yaml").write_text(settings, encoding="utf-8")
    if references:
        (folder / "references").mkdir(exist_ok=True)
        for name in references:
            save_image(folder / "references" / name)
    return folder


def save_image(path, size=(32, 24)):
    Image.new("RGB", size, (200, 40, 40)).save(path)
    return path


def problems_of(path):
    with pytest.raises(BatchValidationError) as caught:
        load_batch(path)
    return caught.value.problems


def test_loads_folder(tmp_path):
    references = ("b.jpg", "a.png", "c.webp")
    folder = make_batch(tmp_path / "spring", settings="steps: 12\n", references=references)
    (folder / "references" / ".DS_Store").write_bytes(b"\0junk")
    source = load_batch(folder)
    assert source.name == "spring"
    assert source.csv_path == folder / "batch.csv"
    assert source.settings_path == folder / "batch.yaml"
    assert [p.name for p in source.reference_paths] == ["a.png", "b.jpg", "c.webp"]
    assert [r.variant_id for r in source.rows] == ["a1", "a2"]
    assert source.settings.steps == 12
    assert len(source.content_hash) == 64 and int(source.content_hash, 16) >= 0


def test_folder_without_settings_or_references_uses_defaults(tmp_path):
    source = load_batch(make_batch(tmp_path / "plain", references=()))
    assert (source.settings_path, source.reference_paths, source.settings.steps) == (None, (), 20)


def test_settings_name_overrides_folder_name(tmp_path):
    assert load_batch(make_batch(tmp_path / "x", settings="name: launch-v2\n")).name == "launch-v2"


def test_loads_csv_path_with_sibling_settings_and_references(tmp_path):
    make_batch(tmp_path / "drop", settings="variations: 3\n")
    csv_path = (tmp_path / "drop" / "batch.csv").rename(tmp_path / "drop" / "products.csv")
    source = load_batch(csv_path)
    assert source.name == "products"
    assert source.settings.variations == 3
    assert [p.name for p in source.reference_paths] == ["style.png"]


def test_missing_path(tmp_path):
    missing = tmp_path / "nope"
    [problem] = problems_of(missing)
    assert problem.file == str(missing)
    assert "does not exist" in problem.message


def test_path_that_is_not_csv(tmp_path):
    path = tmp_path / "batch.xlsx"
    path.write_bytes(b"PK")
    [problem] = problems_of(path)
    assert problem.file == "batch.xlsx"
    assert ".csv file" in problem.message


def test_folder_without_batch_csv_names_other_csvs(tmp_path):
    folder = make_batch(tmp_path / "b", references=())
    (folder / "batch.csv").rename(folder / "Items.CSV")
    [problem] = problems_of(folder)
    assert problem.file == "batch.csv"
    assert "found Items.CSV" in problem.message


def test_invalid_folder_name_needs_name_setting(tmp_path):
    folder = make_batch(tmp_path / "my batch", references=())
    [problem] = problems_of(folder)
    assert problem.file == "my batch"
    assert "set 'name' in batch.yaml" in problem.message
    (folder / "batch.yaml").write_text("name: my-batch\n")
    assert load_batch(folder).name == "my-batch"


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("notes.txt", b"hello", "unsupported file type '.txt'"),
        ("style.gif", b"GIF89a", "unsupported file type '.gif'"),
        ("broken.png", b"\x89PNG\r\n\x1a\nnot really", "cannot be read as an image"),
        ("empty.jpg", b"", "cannot be read as an image"),
    ],
)
def test_bad_reference_files(tmp_path, name, content, fragment):
    folder = make_batch(tmp_path / "b")
    (folder / "references" / name).write_bytes(content)
    [problem] = problems_of(folder)
    assert problem.file == f"references/{name}"
    assert fragment in problem.message


def test_truncated_reference_is_caught(tmp_path):
    folder = make_batch(tmp_path / "b", references=())
    (folder / "references").mkdir()
    path = save_image(folder / "references" / "cut.jpg", size=(256, 256))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    [problem] = problems_of(folder)
    assert problem.file == "references/cut.jpg"


def test_tiny_reference(tmp_path):
    folder = make_batch(tmp_path / "b")
    save_image(folder / "references" / "thin.png", size=(300, 15))
    [problem] = problems_of(folder)
    assert problem.file == "references/thin.png"
    assert "300x15 px" in problem.message


def test_folder_inside_references(tmp_path):
    folder = make_batch(tmp_path / "b")
    (folder / "references" / "more").mkdir()
    [problem] = problems_of(folder)
    assert problem.file == "references/more"


def test_references_path_must_be_folder(tmp_path):
    folder = make_batch(tmp_path / "b", references=())
    (folder / "references").write_text("x")
    [problem] = problems_of(folder)
    assert problem.file == "references"


def test_too_many_references(tmp_path):
    names = [f"r{i}.png" for i in range(6)]
    [problem] = problems_of(make_batch(tmp_path / "b", references=names))
    assert problem.file == "references/"
    assert "6 files" in problem.message and "limit of 5" in problem.message


def test_oversize_reference_is_rejected_without_decoding(tmp_path, monkeypatch):
    folder = make_batch(tmp_path / "b", references=())
    (folder / "references").mkdir()
    with open(folder / "references" / "huge.png", "wb") as handle:
        handle.truncate(MAX_REFERENCE_BYTES + 1_000_000)

    def refuse(*args, **kwargs):
        raise AssertionError("an oversize reference must not be opened")

    monkeypatch.setattr(batch_loader.Image, "open", refuse)
    [problem] = problems_of(folder)
    assert problem.file == "references/huge.png"
    assert f"limit of {MAX_REFERENCE_BYTES:,} bytes" in problem.message


def test_check_references_missing_folder(tmp_path):
    assert check_references(tmp_path / "references") == ([], [])


def test_all_problems_from_settings_csv_and_references_together(tmp_path):
    folder = make_batch(
        tmp_path / "b",
        csv="variant_id,subject\na1,fox\na1,\n",
        settings="steps: 0\ntemplate: '{subject}'\n",
        references=("ok.png",),
    )
    (folder / "references" / "x.bmp").write_bytes(b"BM")
    problems = problems_of(folder)
    assert [(p.file, p.row, p.column) for p in problems] == [
        ("batch.yaml", 1, "steps"),
        ("batch.csv", 3, "variant_id"),
        ("batch.csv", 3, "subject"),
        ("references/x.bmp", None, None),
    ]


def test_invalid_template_setting_falls_back_to_prompt_column(tmp_path):
    folder = make_batch(tmp_path / "b", csv="variant_id,subject\na1,fox\n", settings="template: ''\n")
    problems = problems_of(folder)
    assert [(p.file, p.column) for p in problems] == [("batch.yaml", "template"), ("batch.csv", "prompt")]


def test_content_hash_is_stable_and_tracks_every_input(tmp_path):
    folder = make_batch(tmp_path / "b", settings="steps: 10\n")
    first = load_batch(folder).content_hash
    assert load_batch(folder).content_hash == first

    (folder / "batch.yaml").write_text("steps: 11\n")
    second = load_batch(folder).content_hash
    (folder / "references" / "style.png").rename(folder / "references" / "renamed.png")
    third = load_batch(folder).content_hash
    (folder / "batch.csv").write_text(CSV + "a3,a cat\n")
    fourth = load_batch(folder).content_hash
    assert len({first, second, third, fourth}) == 4


def test_compute_content_hash_frames_each_file(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"xy")
    b.write_bytes(b"z")
    expected = hashlib.sha256(b"csv\x002\x00xysettings\x001\x00z").hexdigest()
    assert compute_content_hash({"settings": b, "csv": a}) == expected
    b.write_bytes(b"")
    a.write_bytes(b"xyz")
    assert compute_content_hash({"settings": b, "csv": a}) != expected


# --- nothing outside the batch folder is read ---------------------------------------------------


def refuse_reading(monkeypatch, secret):
    """Fail the test if `secret` (a file outside the batch) is opened or read."""
    real_open, real_read = Path.open, Path.read_bytes

    def guarded_open(self, *args, **kwargs):
        assert Path(self).resolve() != secret.resolve(), f"{secret} outside the batch was opened"
        return real_open(self, *args, **kwargs)

    def guarded_read(self):
        assert Path(self).resolve() != secret.resolve(), f"{secret} outside the batch was read"
        return real_read(self)

    monkeypatch.setattr(Path, "open", guarded_open)
    monkeypatch.setattr(Path, "read_bytes", guarded_read)


def test_csv_linked_outside_the_batch_is_rejected_unread(tmp_path, monkeypatch):
    secret = tmp_path / "secret.csv"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    folder = make_batch(tmp_path / "b", references=())
    (folder / "batch.csv").unlink()
    (folder / "batch.csv").symlink_to(secret)
    refuse_reading(monkeypatch, secret)
    [problem] = problems_of(folder)
    assert problem.file == "batch.csv"
    assert "outside the batch folder" in problem.message and "root:x" not in str(problem)


def test_csv_path_linked_outside_its_folder_is_rejected(tmp_path):
    secret = tmp_path / "secret.csv"
    secret.write_text(CSV)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "mine.csv").symlink_to(secret)
    [problem] = problems_of(tmp_path / "b" / "mine.csv")
    assert problem.file == "mine.csv" and "outside the batch folder" in problem.message


def test_settings_linked_outside_the_batch_is_rejected_unread(tmp_path, monkeypatch):
    secret = tmp_path / "secret.yaml"
    secret.write_text("steps: 30\n")
    folder = make_batch(tmp_path / "b", references=())
    (folder / "batch.yaml").symlink_to(secret)
    refuse_reading(monkeypatch, secret)
    [problem] = problems_of(folder)
    assert problem.file == "batch.yaml" and "outside the batch folder" in problem.message


def test_reference_linked_outside_the_batch_is_rejected_unread(tmp_path, monkeypatch):
    secret = save_image(tmp_path / "secret.png")
    folder = make_batch(tmp_path / "b", references=())
    (folder / "references").mkdir()
    (folder / "references" / "style.png").symlink_to(secret)
    monkeypatch.setattr(batch_loader.Image, "open", refuse_image_open)
    [problem] = problems_of(folder)
    assert problem.file == "references/style.png" and "outside the batch folder" in problem.message


def test_references_folder_linked_outside_the_batch_is_rejected(tmp_path, monkeypatch):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    save_image(outside / "style.png")
    folder = make_batch(tmp_path / "b", references=())
    (folder / "references").symlink_to(outside)
    monkeypatch.setattr(batch_loader.Image, "open", refuse_image_open)
    [problem] = problems_of(folder)
    assert problem.file == "references/" and "outside the batch folder" in problem.message


def test_links_that_stay_inside_the_batch_are_allowed(tmp_path):
    folder = make_batch(tmp_path / "b", references=())
    (folder / "data").mkdir()
    (folder / "batch.csv").rename(folder / "data" / "real.csv")
    (folder / "batch.csv").symlink_to(folder / "data" / "real.csv")
    (folder / "refs").mkdir()
    save_image(folder / "refs" / "style.png")
    (folder / "references").symlink_to("refs")
    source = load_batch(folder)
    assert [p.name for p in source.reference_paths] == ["style.png"]
    assert len(source.rows) == 2


def test_dangling_settings_link_is_reported(tmp_path):
    folder = make_batch(tmp_path / "b", references=())
    (folder / "batch.yaml").symlink_to(tmp_path / "missing.yaml")
    [problem] = problems_of(folder)
    assert problem.file == "batch.yaml" and "does not exist" in problem.message


def refuse_image_open(*args, **kwargs):
    raise AssertionError("this file must not be opened as an image")


# --- special files ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["batch.csv", "batch.yaml", "references/style.png"])
def test_fifo_inputs_are_rejected_without_opening(tmp_path, name):
    folder = make_batch(tmp_path / "b", references=())
    (folder / "references").mkdir()
    (folder / name).unlink(missing_ok=True)
    os.mkfifo(folder / name)  # opening a FIFO with no writer would block the test forever
    [problem] = problems_of(folder)
    assert problem.file == name
    assert "FIFO" in problem.message or "not a regular file" in problem.message


def test_device_reference_is_rejected(tmp_path):
    folder = make_batch(tmp_path / "b", references=())
    (folder / "references").mkdir()
    (folder / "references" / "style.png").symlink_to("/dev/zero")
    [problem] = problems_of(folder)
    # /dev/zero is outside the batch folder, so it is refused before its type is even looked at.
    assert problem.file == "references/style.png" and "outside the batch folder" in problem.message


def test_safe_files_names_special_kinds(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    message = safe_files.file_problem(tmp_path / "pipe", tmp_path.resolve(), "a CSV file")
    assert message == "is a FIFO (named pipe), not a regular file; expected a CSV file"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "sock"))
        message = safe_files.file_problem(tmp_path / "sock", tmp_path.resolve(), "a CSV file")
    assert message.startswith("is a socket")
    message = safe_files.file_problem(tmp_path, tmp_path.resolve(), "a CSV file")
    assert message == "is a folder, expected a CSV file"
    message = safe_files.file_problem(Path("/dev/null"), Path("/dev").resolve(), "an image file")
    assert message == "is a device, not a regular file; expected an image file"


def test_accepted_jpeg_is_decoded_at_reduced_size(tmp_path, monkeypatch):
    folder = make_batch(tmp_path / "b", references=())
    (folder / "references").mkdir()
    save_image(folder / "references" / "style.jpg", size=(512, 256))
    decoded = []
    real_load = Image.Image.load

    def spy(self):
        result = real_load(self)
        decoded.append(self.size)
        return result

    monkeypatch.setattr(Image.Image, "load", spy)
    references, problems = check_references(folder / "references")
    assert problems == [] and [p.name for p in references] == ["style.jpg"]
    assert decoded and max(decoded) == (64, 32)


def test_pillow_bomb_limit_does_not_decide(tmp_path, monkeypatch):
    # A Pillow limit lowered elsewhere still gives a clear message, and no crash.
    folder = make_batch(tmp_path / "b", references=("style.png",))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    [problem] = problems_of(folder)
    assert problem.file == "references/style.png" and "limit is 40,000,000 pixels" in problem.message
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    monkeypatch.setattr(batch_loader, "MAX_REFERENCE_PIXELS", 100)
    [problem] = problems_of(folder)
    assert "limit of 100 pixels" in problem.message


# --- pixel limit --------------------------------------------------------------------------------


def test_reference_over_pixel_limit_is_rejected_from_header_without_decoding(tmp_path, monkeypatch):
    folder = make_batch(tmp_path / "b", references=("big.png",))

    def refuse(*args, **kwargs):
        raise AssertionError("an image over the pixel limit must not be decoded")

    monkeypatch.setattr(batch_loader, "MAX_REFERENCE_PIXELS", 500)
    monkeypatch.setattr(batch_loader.Image.Image, "load", refuse)
    monkeypatch.setattr(batch_loader.Image.Image, "verify", refuse)
    [problem] = problems_of(folder)
    assert problem.file == "references/big.png"
    assert "32x24 px (768 pixels)" in problem.message and "limit of 500 pixels" in problem.message


def test_pixel_limit_is_40_megapixels():
    assert MAX_REFERENCE_PIXELS == 40_000_000


# --- names storage cannot hold ------------------------------------------------------------------


@pytest.mark.parametrize(("name", "fragment"), [("style\\1.png", "backslash"), ("sty\nle.png", "control")])
def test_reference_names_storage_cannot_hold_are_rejected(tmp_path, name, fragment):
    folder = make_batch(tmp_path / "b", references=(name,))
    [problem] = problems_of(folder)
    assert problem.file == "references/"
    assert repr(name) in problem.message and fragment in problem.message


# --- batch.csv that is a folder -----------------------------------------------------------------


def test_batch_csv_that_is_a_folder_says_so(tmp_path):
    folder = make_batch(tmp_path / "b", references=())
    (folder / "batch.csv").unlink()
    (folder / "batch.csv").mkdir()
    [problem] = problems_of(folder)
    assert problem.file == "batch.csv"
    assert problem.message == "batch.csv is a folder, expected a CSV file"


# --- YAML bomb and CSV control characters through load_batch ------------------------------------


def test_yaml_alias_bomb_is_a_problem_of_the_batch(tmp_path):
    lines = ['a0: &a0 ["lol"]'] + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    folder = make_batch(tmp_path / "b", settings="\n".join(lines) + "\n", references=())
    [problem] = problems_of(folder)
    assert (problem.file, problem.row) == ("batch.yaml", 5)
    assert "more than 10,000 values" in problem.message


def test_nul_in_csv_cell_is_a_problem_of_the_batch(tmp_path):
    folder = make_batch(tmp_path / "b", csv="variant_id,prompt\na1,a\x00fox\n", references=())
    [problem] = problems_of(folder)
    assert (problem.file, problem.row, problem.column) == ("batch.csv", 2, "prompt")
