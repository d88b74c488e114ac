"""The pages over one real catalogued batch, as the roles see them: what each shows, forms that
post back and redirect, upload problems by row and column, and escaping."""

from __future__ import annotations

import io
import re
import zipfile

from harness.library_people import wait_for_run
from markupsafe import escape


def csrf_of(page) -> str:
    """The CSRF token a page carries (every page has it, for its forms and scripts)."""
    return re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text)[1]


def test_batches_page_shows_status_pass_rate_owner_and_covers(browsers, world):
    page = browsers["viewer"].get("/batches")
    assert page.status_code == 200
    assert f'href="/batches/{world.key}"' in page.text and "creator@studio.example" in page.text
    assert 'class="badge exported"' in page.text and "pass rate" in page.text
    assert page.text.count(f'src="/files/thumbnails/{world.key}/') == 3
    # Viewers are not offered what they may not do.
    assert "New batch" not in page.text and "Admin</a>" not in page.text
    assert "New batch" in browsers["creator"].get("/batches").text


def test_batches_page_filters_mine_with_one_click(browsers, world):
    every = browsers["creator"].get("/batches")
    assert '<a href="/batches?mine=1"' in every.text
    mine = browsers["creator"].get("/batches?mine=1")
    assert f'href="/batches/{world.key}"' in mine.text
    assert re.search(r'<a href="/batches\?mine=1" class="here" aria-current="page"[^>]*>Mine</a>', mine.text)
    owners = re.findall(r'<span class="muted">Owner</span><br>([^<]+)</div>', mine.text)
    assert owners and set(owners) == {"creator@studio.example"}
    theirs = browsers["viewer"].get("/batches?mine=1")
    assert "You own no batches" in theirs.text and f'href="/batches/{world.key}"' not in theirs.text


def test_batch_page_grid_list_sort_and_filters(browsers, world):
    grid = browsers["creator"].get(f"/batches/{world.key}")
    assert grid.text.count('class="tile"') == 3 and "Download ZIP" in grid.text and "Approve" in grid.text
    listed = browsers["viewer"].get(f"/batches/{world.key}?view=list&sort=name")
    names = re.findall(r'<td><a href="/assets/[^"]+">([^<]+)</a></td>', listed.text)
    assert names == sorted(names) and len(names) == 3
    assert "Approve" not in listed.text  # a viewer may download, not review
    filtered = browsers["viewer"].get(f"/batches/{world.key}?category=weapon/sword")
    assert filtered.text.count('class="tile"') == len(world.catalog.search(None, batch=world.key, category="weapon/sword"))
    none = browsers["viewer"].get(f"/batches/{world.key}?min_score=0.99&max_score=1")
    assert "No image matches these filters" in none.text
    bad = browsers["viewer"].get(f"/batches/{world.key}?sort=colour")
    assert bad.status_code == 400 and "sort &#39;colour&#39; is not one of" in bad.text


def test_bulk_approve_then_download_the_selection_as_a_zip(browsers, world):
    page = browsers["creator"].get(f"/batches/{world.key}")
    ids = re.findall(r'name="asset" value="([^"]+)"', page.text)
    # Back where the form was, its query kept and an earlier notice replaced.
    back = f"/batches/{world.key}?view=list&notice=exported&n=9"
    done = browsers["creator"].post("/selection/review", follow_redirects=False,
                       data={"asset": ids, "decision": "approved", "back": back, "csrf_token": csrf_of(page)})
    assert done.headers["location"] == f"/batches/{world.key}?view=list&notice=reviewed&n=3"
    shown = browsers["creator"].get(done.headers["location"])
    assert "Review saved for 3 image(s)." in shown.text and shown.text.count('class="badge approved"') == 3
    assert "all of your" not in browsers["viewer"].get(f"/batches/{world.key}?notice=reviewed&n=all+of+your").text
    package = browsers["viewer"].post("/selection/download",
                          data={"asset": ids[:2], "csrf_token": csrf_of(browsers["viewer"].get("/batches"))})
    assert package.headers["content-type"] == "application/zip" and package.content[:2] == b"PK"
    # A redirect back never leaves the site.
    away = browsers["creator"].post("/selection/review", follow_redirects=False,
                       data={"asset": ids, "decision": "clear", "back": "//evil.example/x", "csrf_token": csrf_of(page)})
    assert away.headers["location"].startswith("/batches?")


def test_asset_page_shows_metadata_tags_scores_versions_and_actions(browsers, world):
    asset = world.catalog.search(None, batch=world.key, limit=1)[0]
    page = browsers["creator"].get(f"/assets/{asset['id']}")
    # As the page escapes them ("blacksmith's" is "blacksmith&#39;s").
    assert str(escape(asset["prompt"])) in page.text and str(escape(asset["file_name"])) in page.text
    for label in ("palette", "lighting", "composition", "texture", "embedding"):
        assert f"<span>{label}</span>" in page.text
    tags = world.catalog.asset_tags(asset["id"])
    assert all(t["label"] in page.text for t in tags) and f"{tags[0]['confidence']:.2f}" in page.text
    assert "v1" in page.text and 'class="version current"' in page.text
    assert f'href="/search?like={asset["id"]}' in page.text
    assert "Download compressed JPEG" in page.text and "Regenerate" in page.text
    viewer = browsers["viewer"].get(f"/assets/{asset['id']}")
    assert "Regenerate" not in viewer.text and "Download PNG" in viewer.text
    original = browsers["viewer"].get(f"/assets/{asset['id']}/download?format=original")
    assert original.content == world.storage.read_bytes(asset["raw_key"])
    assert f'filename="{asset["file_name"]}"' in original.headers["content-disposition"]


def test_search_page_builds_its_form_from_every_catalog_filter(browsers, world):
    from resources.catalog_search import FILTERS

    empty = browsers["viewer"].get("/search")
    for f in FILTERS:
        assert f'name="{f.name}"' in empty.text
    found = browsers["viewer"].get("/search", params={"q": "scimitar", "verdict": "review"})
    expected = world.catalog.search("scimitar", verdict="review")
    assert found.text.count('class="tile"') == len(expected) > 0
    similar = browsers["viewer"].get("/search", params={"like": expected[0]["id"]})
    assert "similar" in similar.text and expected[0]["id"] not in re.findall(r'value="([^"]+)" aria-label', similar.text)
    bad = browsers["viewer"].get("/search", params={"since": "yesterday"})
    assert bad.status_code == 400 and "filter since" in bad.text


def test_a_bad_csv_shows_every_problem_by_row_and_column_and_nothing_runs(browsers, world):
    form = browsers["creator"].get("/batches/new")
    assert 'name="csv"' in form.text and 'name="steps"' in form.text and 'name="profile"' in form.text
    csv = b"variant_id,prompt\nsword-01,a sword\nsword-01,\n"
    preview = browsers["creator"].post("/batches/new", files={"csv": ("items.csv", csv, "text/csv")},
                          data={"csrf_token": csrf_of(form), "steps": "many"})
    assert preview.status_code == 400
    rows = re.findall(r'<td class="where">([^<]+)</td><td class="num">([^<]+)</td><td class="mono">([^<]+)</td>', preview.text)
    assert ("batch.csv", "3", "variant_id") in rows
    assert any(file == "batch.yaml" and column == "steps" for file, _, column in rows)
    assert "Submit batch" not in preview.text and "Upload again" in preview.text
    assert "/batches/new/" not in preview.text  # no submit form: nothing was registered


def test_what_people_typed_is_escaped_everywhere(browsers, world):
    evil = '<script>alert("x")</script>'
    page = browsers["viewer"].get("/search", params={"q": evil})
    assert evil not in page.text and "&lt;script&gt;" in page.text
    csv = b'variant_id,prompt\n<img src=x onerror=alert(1)>,a sword\n'
    form = browsers["creator"].get("/batches/new")
    preview = browsers["creator"].post("/batches/new", data={"csrf_token": csrf_of(form)},
                          files={"csv": ("x.csv", csv, "text/csv")})
    assert "<img src=x onerror" not in preview.text and "&lt;img src=x onerror" in preview.text


def test_styles_page_creates_a_profile_from_uploads_and_shows_its_palette(browsers, world):
    from harness.sample_batches import EXAMPLE

    page = browsers["creator"].get("/styles")
    ref = sorted((EXAMPLE / "references").iterdir())[0]
    created = browsers["creator"].post("/styles", follow_redirects=False,
                          data={"csrf_token": csrf_of(page), "name": "brand-page", "lock_texture": "40"},
                          files=[("references", (ref.name, ref.read_bytes(), "image/png"))])
    assert created.headers["location"] == "/styles/brand-page?notice=profile-saved"
    shown = browsers["viewer"].get("/styles/brand-page")
    assert '<svg class="palette"' in shown.text and shown.text.count("<rect ") >= 1
    assert "texture 40" in shown.text and "Edit as a new version" not in shown.text
    mine = browsers["creator"].get("/styles/brand-page")
    edited = browsers["creator"].post("/styles/brand-page", follow_redirects=False,
                         data={"csrf_token": csrf_of(mine), "lock_texture": "60", "threshold": "0.7"})
    assert edited.status_code == 303
    assert "texture 60" in browsers["viewer"].get("/styles/brand-page").text
    wrong = browsers["creator"].post("/styles", data={"csrf_token": csrf_of(page), "name": "x"},
                        files=[("references", ("notes.png", b"plain text", "image/png"))])
    assert wrong.status_code == 400 and "notes.png" in wrong.text


def test_admin_page_shows_roles_activity_and_downloads(browsers):
    page = browsers["admin"].get("/admin")
    assert "admin@studio.example" in page.text and "group <b>artists</b>" in page.text
    assert "API token of viewer-script" in page.text and "token-of-the" not in page.text
    assert browsers["creator"].get("/admin").status_code == 403


def test_export_preset_and_bulk_regenerate_from_the_batch_page(browsers, world, launcher):

    page = browsers["creator"].get(f"/batches/{world.key}")
    assert f'action="/batches/{world.key}/export"' in page.text
    assert all(f'name="exports" value="{f}"' in page.text for f in ("zip", "manifest", "gallery", "links"))
    assert 'formaction="/selection/regenerate"' in page.text
    seen = browsers["viewer"].get(f"/batches/{world.key}")
    assert f'action="/batches/{world.key}/export"' not in seen.text and "/selection/regenerate" not in seen.text
    ids = re.findall(r'name="asset" value="([^"]+)"', page.text)
    form = {"exports": ["zip"], "export_only": "approved", "csrf_token": csrf_of(seen)}
    assert browsers["viewer"].post(f"/batches/{world.key}/export", data=form).status_code == 403
    assert browsers["viewer"].post("/selection/regenerate", data={"asset": ids[:1], "csrf_token": csrf_of(seen)}).status_code == 403
    # Without the CSRF token, even a creator is refused.
    assert browsers["creator"].post(f"/batches/{world.key}/export", data={"exports": ["zip"]}).status_code == 403
    browsers["creator"].post("/selection/review", data={"asset": ids[:1], "decision": "approved", "csrf_token": csrf_of(page)})
    done = browsers["creator"].post(f"/batches/{world.key}/export", follow_redirects=False,
                                    data={**form, "csrf_token": csrf_of(page)})
    assert done.headers["location"] == f"/batches/{world.key}?notice=exported-preset&n=1"
    assert set(world.catalog.batch_exports(world.key)) == {"zip"}
    package = zipfile.ZipFile(io.BytesIO(world.storage.read_bytes(world.catalog.batch_exports(world.key)["zip"])))
    assert len([n for n in package.namelist() if n.endswith(".png")]) == 1
    none = browsers["creator"].post(f"/batches/{world.key}/export", data={"csrf_token": csrf_of(page)})
    assert none.status_code == 400 and "choose at least one export format" in none.text
    every = {"exports": ["zip", "manifest", "gallery", "links"], "export_only": "all", "csrf_token": csrf_of(page)}
    assert browsers["creator"].post(f"/batches/{world.key}/export", data=every).status_code == 200
    assert len(world.catalog.batch_exports(world.key)) == 4
    browsers["creator"].post("/selection/review", data={"asset": ids, "decision": "clear", "csrf_token": csrf_of(page)})
    # Bulk regenerate: a new version of each selected image, then the batch re-exported by one run.
    before = world.catalog.get_asset(ids[0])["current_version"]
    last = launcher.latest_run(world.key)
    started = browsers["creator"].post("/selection/regenerate", follow_redirects=False,
                                       data={"asset": ids[:1], "back": f"/batches/{world.key}", "csrf_token": csrf_of(page)})
    assert started.headers["location"] == f"/batches/{world.key}?notice=regenerating&n=1"
    assert wait_for_run(launcher, world.key, after=last and last.run_id).status == "SUCCESS"
    assert world.catalog.get_asset(ids[0])["current_version"] == before + 1
