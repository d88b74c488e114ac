import hashlib

import pytest
from PIL import Image

from assetql_dagster.domain import batch_loader
from assetql_dagster.domain.batch_loader import (
    MAX_REFERENCE_BYTES,
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
