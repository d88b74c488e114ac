import json
import os

import pytest
from PIL import Image

from assetql_dagster.domain.errors import BatchValidationError
from assetql_dagster.domain.profiles import diff_profiles
from assetql_dagster.pipeline import profiles
from assetql_dagster.pipeline.planning import plan_images
from assetql_dagster.pipeline.profiles import (
    ProfileNotFound,
    create_profile,
    get_profile,
    list_profiles,
)
from assetql_dagster.pipeline.registration import register_batch, registered_batch
from resources.storage import LocalStorage

RED, GREEN, BLUE = (200, 30, 30), (30, 200, 30), (30, 30, 200)
WATERCOLOR = "watercolor painting, soft washes, paper texture"


@pytest.fixture
def storage(tmp_path):
    return LocalStorage(root=str(tmp_path / "data"))


def refs_folder(root, name, **images):
    """A folder of 32x32 PNGs, one per `file_stem=colour`."""
    folder = root / name
    folder.mkdir(parents=True)
    for stem, colour in images.items():
        Image.new("RGB", (32, 32), colour).save(folder / f"{stem}.png")
    return folder


def with_style(folder, style, drop=()):
    """`folder`'s batch.yaml with `style` added and the settings in `drop` removed."""
    lines = [line for line in (folder / "batch.yaml").read_text().splitlines() if line.split(":")[0] not in drop]
    (folder / "batch.yaml").write_text("\n".join(lines) + f"\nstyle: {style}\n")
    return folder


def stored_references(storage, key):
    """{file name: bytes} of the references registered for batch `key`."""
    return {k.rsplit("/", 1)[-1]: storage.read_bytes(k) for k in registered_batch(storage, key).references}


def profile_images(storage, spec):
    return {ref.file_name: storage.read_bytes(ref.key) for ref in spec.references}


def test_versions_are_stored_under_their_own_keys_and_never_rewritten(tmp_path, storage):
    v1 = create_profile(storage, "brand-x", refs_folder(tmp_path, "v1", red=RED, blue=BLUE),
                        {"palette": 80}, 0.8, "first")
    assert (v1.name, v1.version, v1.locks, v1.threshold, v1.notes, v1.preset) == (
        "brand-x", 1, {"palette": 80}, 0.8, "first", None)
    assert storage.list_keys("style-profiles") == [
        "style-profiles/brand-x/v1/profile.json",
        "style-profiles/brand-x/v1/references/blue.png",
        "style-profiles/brand-x/v1/references/red.png",
    ]
    before = {key: storage.read_bytes(key) for key in storage.list_keys("style-profiles")}

    v2 = create_profile(storage, "brand-x", refs_folder(tmp_path, "v2", red=GREEN), {"lighting": 50},
                        notes="second", preset="watercolor")

    assert v2.version == 2 and [r.key for r in v2.references] == ["style-profiles/brand-x/v2/references/red.png"]
    assert {key: storage.read_bytes(key) for key in before} == before
    assert json.loads(storage.read_text("style-profiles/brand-x/v2/profile.json")) == json.loads(
        json.dumps(v2.to_dict()))
    assert get_profile(storage, "brand-x") == v2
    assert get_profile(storage, "brand-x@1") == v1
    assert diff_profiles(v1, v2)[:2] == [
        f"reference removed: blue.png (sha256 {v1.references[0].sha256[:12]})",
        f"reference removed: red.png (sha256 {v1.references[1].sha256[:12]})",
    ]


def test_list_gives_the_latest_complete_version_of_each_profile(tmp_path, storage):
    refs = refs_folder(tmp_path, "refs", a=RED)
    for name in ("zeta", "alpha", "alpha"):
        create_profile(storage, name, refs)
    # Images without profile.json are what a create that died midway leaves: not a version.
    storage.write_bytes("style-profiles/crashed/v1/references/a.png", (refs / "a.png").read_bytes())

    assert [spec.ref for spec in list_profiles(storage)] == ["alpha@2", "zeta@1"]
    assert create_profile(storage, "crashed", refs).version == 1


def test_a_version_completed_by_another_create_meanwhile_is_not_rewritten(tmp_path, storage, monkeypatch):
    v1 = create_profile(storage, "brand-x", refs_folder(tmp_path, "v1", a=RED))
    before = {key: storage.read_bytes(key) for key in storage.list_keys("style-profiles")}
    # As a create that listed the versions just before v1 was written would see them.
    monkeypatch.setattr(profiles, "profile_versions", lambda storage, name: [])

    with pytest.raises(FileExistsError, match="profile brand-x@1 was created by another command meanwhile"):
        create_profile(storage, "brand-x", refs_folder(tmp_path, "late", a=GREEN))

    monkeypatch.undo()
    assert {key: storage.read_bytes(key) for key in storage.list_keys("style-profiles")} == before
    assert get_profile(storage, "brand-x") == v1


def test_a_stored_reference_changed_behind_the_profile_is_not_registered(tmp_path, storage, batch_factory):
    spec = create_profile(storage, "brand-x", refs_folder(tmp_path, "refs", a=RED))
    storage.write_bytes(spec.references[0].key, (refs_folder(tmp_path, "other", a=GREEN) / "a.png").read_bytes())
    with pytest.raises(ValueError, match="changed after the profile was created"):
        register_batch(storage, with_style(batch_factory(rows=2, references=False), "brand-x"))
    assert storage.list_keys("batches") == []


def test_missing_profiles_and_versions_are_named_with_what_exists(tmp_path, storage):
    refs = refs_folder(tmp_path, "refs", a=RED)
    with pytest.raises(ProfileNotFound, match="no style profile 'brand-x' in storage; existing profiles: none"):
        get_profile(storage, "brand-x")
    create_profile(storage, "brand-x", refs)
    create_profile(storage, "brand-x", refs)
    create_profile(storage, "other", refs)
    with pytest.raises(ProfileNotFound, match="no style profile 'brand-y' in storage; existing profiles: brand-x, other"):
        get_profile(storage, "brand-y")
    with pytest.raises(ProfileNotFound, match="'brand-x' has no version 3; existing versions: brand-x@1, brand-x@2"):
        get_profile(storage, "brand-x@3")
    with pytest.raises(ValueError, match="'preset:anime' is a built-in preset, not a stored profile"):
        get_profile(storage, "preset:anime")


def test_a_reference_folder_is_checked_like_a_batch_references_folder(tmp_path, storage):
    refs = refs_folder(tmp_path, "refs", a=RED)
    (refs / "notes.txt").write_text("not an image")
    Image.new("RGB", (8, 8), BLUE).save(refs / "tiny.png")
    outside = refs_folder(tmp_path, "elsewhere", secret=GREEN)
    os.symlink(outside / "secret.png", refs / "link.png")
    os.mkfifo(refs / "pipe.png")

    with pytest.raises(BatchValidationError) as raised:
        create_profile(storage, "brand-x", refs)

    messages = {p.file: p.message for p in raised.value.problems}
    assert set(messages) == {"refs/notes.txt", "refs/tiny.png", "refs/link.png", "refs/pipe.png"}
    assert messages["refs/notes.txt"].startswith("unsupported file type '.txt'")
    assert "both sides must be at least 16 px" in messages["refs/tiny.png"]
    assert "is a link to a location outside the batch folder" in messages["refs/link.png"]
    assert "is a FIFO (named pipe), not a regular file" in messages["refs/pipe.png"]
    assert storage.list_keys("style-profiles") == []


def test_too_many_references_and_unusable_folders_store_nothing(tmp_path, storage):
    many = refs_folder(tmp_path, "many", **{f"r{i}": (i * 40, 0, 0) for i in range(6)})
    with pytest.raises(BatchValidationError, match="6 files, more than the limit of 5 style references"):
        create_profile(storage, "brand-x", many)
    with pytest.raises(ValueError, match=r"reference folder '.*missing' does not exist"):
        create_profile(storage, "brand-x", tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no images; a profile needs 1 to 5"):
        create_profile(storage, "brand-x", tmp_path / "empty")
    assert storage.list_keys("style-profiles") == []


@pytest.mark.parametrize(
    "name, fields, message",
    [
        ("brand x", {}, "profile name 'brand x' must be 1-64 letters"),
        ("brand-x", {"locks": {"shine": 10}}, r"unknown parameter\(s\) \['shine'\] in locks"),
        ("brand-x", {"locks": {"palette": 120}}, "lock for 'palette' must be an integer from 0 to 100, got 120"),
        ("brand-x", {"threshold": 1.2}, r"threshold must be a number in \[0, 1\], got 1.2"),
        ("brand-x", {"preset": "oil"}, "unknown preset 'oil'"),
    ],
)
def test_invalid_profile_fields_store_nothing(tmp_path, storage, name, fields, message):
    with pytest.raises(ValueError, match=message):
        create_profile(storage, name, refs_folder(tmp_path, "refs", a=RED), **fields)
    assert storage.list_keys("style-profiles") == []


def test_a_batch_pinned_to_version_1_keeps_using_it_after_version_2_exists(tmp_path, storage, batch_factory):
    v1 = create_profile(storage, "brand-x", refs_folder(tmp_path, "v1", a=RED, b=BLUE))
    create_profile(storage, "brand-x", refs_folder(tmp_path, "v2", c=GREEN))

    key = register_batch(storage, with_style(batch_factory(rows=2, references=False), "brand-x@1")).key

    batch = registered_batch(storage, key)
    assert batch.settings.style == "brand-x@1"
    assert stored_references(storage, key) == profile_images(storage, v1)
    assert all(k.startswith(f"style-references/{key}/") for k in batch.references)


def test_an_unpinned_batch_takes_the_latest_version_at_registration_and_keeps_it(tmp_path, storage, batch_factory):
    v1 = create_profile(storage, "brand-x", refs_folder(tmp_path, "v1", a=RED))
    folder = with_style(batch_factory(rows=2, references=False), "brand-x")
    first = register_batch(storage, folder)
    assert registered_batch(storage, first.key).settings.style == "brand-x@1"
    stored = storage.read_text(f"batches/{first.key}/source/batch.yaml")

    v2 = create_profile(storage, "brand-x", refs_folder(tmp_path, "v2", a=GREEN))

    assert registered_batch(storage, first.key).settings.style == "brand-x@1"
    assert stored_references(storage, first.key) == profile_images(storage, v1)
    assert storage.read_text(f"batches/{first.key}/source/batch.yaml") == stored
    # Registering the folder again is registering other content (v2's images): a new partition.
    again = register_batch(storage, folder)
    assert again.created and again.key != first.key
    assert registered_batch(storage, again.key).settings.style == "brand-x@2"
    assert stored_references(storage, again.key) == profile_images(storage, v2)
    assert register_batch(storage, folder).created is False


def test_the_profile_locks_and_threshold_apply_unless_batch_yaml_sets_them(tmp_path, storage, batch_factory):
    create_profile(storage, "brand-x", refs_folder(tmp_path, "refs", a=RED), {"palette": 80, "lighting": 50}, 0.6)
    own = with_style(batch_factory(rows=2, references=False, name="own"), "brand-x")
    (own / "batch.yaml").write_text((own / "batch.yaml").read_text() + "locks: {texture: 20}\n")
    taken = with_style(batch_factory(rows=2, references=False, name="taken"), "brand-x", drop=("style_threshold",))

    own_settings = registered_batch(storage, register_batch(storage, own).key).settings
    taken_settings = registered_batch(storage, register_batch(storage, taken).key).settings

    assert (own_settings.style_threshold, own_settings.lock_weights) == (0.85, {"texture": 20})
    assert (taken_settings.style_threshold, taken_settings.lock_weights) == (0.6, {"palette": 80, "lighting": 50})


def test_a_preset_appends_its_words_to_every_prompt_and_the_negative_prompt(storage, batch_factory):
    folder = with_style(batch_factory(rows=3), "preset:watercolor")
    key = register_batch(storage, folder).key

    batch = registered_batch(storage, key)
    assert batch.settings.style == "preset:watercolor"
    assert sorted(stored_references(storage, key)) == ["style-1.png", "style-2.png"]  # its own
    jobs = plan_images(batch).jobs
    assert len(jobs) == 3
    assert all(job.prompt.endswith(f"painterly fantasy style, {WATERCOLOR}") for job in jobs)
    assert {job.negative_prompt for job in jobs} == {"blurry, text, watermark, photo, 3d render"}


def test_a_profile_and_a_preset_combine(tmp_path, storage, batch_factory):
    v1 = create_profile(storage, "brand-x", refs_folder(tmp_path, "refs", a=RED), threshold=0.7)
    folder = with_style(batch_factory(rows=2, references=False), "[preset:anime, brand-x]", drop=("style_threshold",))

    batch = registered_batch(storage, register_batch(storage, folder).key)

    assert batch.settings.style == ["preset:anime", "brand-x@1"]
    assert batch.settings.style_threshold == 0.7
    assert stored_references(storage, batch.batch) == profile_images(storage, v1)
    assert all(job.prompt.endswith("anime style, cel shading, clean line art, expressive eyes")
               for job in plan_images(batch).jobs)


def test_the_profile_preset_applies_and_a_preset_in_style_replaces_it(tmp_path, storage, batch_factory):
    create_profile(storage, "brand-x", refs_folder(tmp_path, "refs", a=RED), preset="watercolor")
    alone = with_style(batch_factory(rows=1, references=False, name="alone"), "brand-x")
    replaced = with_style(batch_factory(rows=1, references=False, name="replaced"), "[brand-x, preset:cartoon]")

    [alone_job] = plan_images(registered_batch(storage, register_batch(storage, alone).key)).jobs
    [replaced_job] = plan_images(registered_batch(storage, register_batch(storage, replaced).key)).jobs

    assert alone_job.prompt.endswith(WATERCOLOR)
    assert replaced_job.prompt.endswith("flat cel shading, vibrant colors") and WATERCOLOR not in replaced_job.prompt


def test_launchpad_overrides_and_a_style_both_apply(tmp_path, storage, batch_factory):
    create_profile(storage, "brand-x", refs_folder(tmp_path, "refs", a=RED))
    folder = with_style(batch_factory(rows=2, references=False), "brand-x")

    batch = registered_batch(storage, register_batch(storage, folder, overrides={"seed": 7}).key)

    assert (batch.settings.seed, batch.settings.style) == (7, "brand-x@1")
    assert list(stored_references(storage, batch.batch)) == ["a.png"]


@pytest.mark.parametrize(
    "style, message",
    [
        ("brand-y", "no style profile 'brand-y' in storage; existing profiles: brand-x"),
        ("brand-x@3", "style profile 'brand-x' has no version 3; existing versions: brand-x@1"),
    ],
)
def test_a_missing_profile_or_version_is_reported_at_batch_yaml_style(
    tmp_path, storage, batch_factory, style, message
):
    create_profile(storage, "brand-x", refs_folder(tmp_path, "refs", a=RED))
    with pytest.raises(BatchValidationError) as raised:
        register_batch(storage, with_style(batch_factory(rows=2, references=False), style))
    [problem] = raised.value.problems
    assert (problem.file, problem.column, problem.message) == ("batch.yaml", "style", message)
    assert storage.list_keys("batches") == [] and storage.list_keys("style-references") == []


def test_a_batch_with_its_own_references_and_a_profile_is_rejected(tmp_path, storage, batch_factory):
    create_profile(storage, "brand-x", refs_folder(tmp_path, "refs", a=RED))
    with pytest.raises(BatchValidationError) as raised:
        register_batch(storage, with_style(batch_factory(rows=2), "[brand-x, preset:anime]"))
    [problem] = raised.value.problems
    assert (problem.file, problem.column) == ("batch.yaml", "style")
    assert problem.message == (
        "names reference profile 'brand-x' and the batch has its own references/ (2 image(s)); remove "
        "references/ to use the profile's references, or remove 'brand-x' from 'style' to use the batch's own"
    )
    assert storage.list_keys("batches") == []
