"""The JSON API over one real catalogued batch: batches, assets, search, reviews, exports, styles,
downloads and activity, uploads checked like the command line, and its OpenAPI document."""

from __future__ import annotations

import io
import json
import zipfile

from harness.library_people import PROXY, library_config, token, wait_for_run
from harness.sample_batches import EXAMPLE
from PIL import Image
from starlette.testclient import TestClient

from assetql_dagster.library.app import create_app
from assetql_dagster.pipeline.registration import register_batch


def assets(world):
    return world.catalog.search(None, batch=world.key, sort="name")


def test_batches_list_and_one_batch_with_its_exports(client, world):
    listed = client.get("/api/v1/batches", headers=token("viewer")).json()["batches"]
    batch = next(b for b in listed if b["key"] == world.key)
    assert (batch["status"], batch["images_stored"], batch["owner"]) == ("exported", 3, "creator@studio.example")
    assert batch["pass_rate"] is None or 0 <= batch["pass_rate"] <= 1
    one = client.get(f"/api/v1/batches/{world.key}", headers=token("viewer")).json()
    assert one["settings"]["steps"] == 2
    assert one["exports"]["zip"] == f"/files/exports/{world.key}/{world.key}.zip"
    owned = client.get("/api/v1/batches", params={"owner": "creator@studio.example"}, headers=token("viewer")).json()
    assert world.key in [b["key"] for b in owned["batches"]]
    assert client.get("/api/v1/batches", params={"mine": "1"}, headers=token("viewer")).json() == {"batches": []}
    missing = client.get("/api/v1/batches/nope-00000000", headers=token("viewer"))
    assert missing.status_code == 404 and "no batch 'nope-00000000'" in missing.json()["error"]


def test_assets_by_filter_full_text_and_similarity(client, world):
    every = client.get("/api/v1/assets", params={"batch": world.key, "sort": "name"}, headers=token("viewer")).json()["assets"]
    assert [a["id"] for a in every] == [a["id"] for a in assets(world)]
    assert every[0]["thumbnail_url"] == f"/files/{every[0]['thumb_key']}"
    swords = client.get("/api/v1/assets", params={"q": "scimitar"}, headers=token("viewer")).json()["assets"]
    assert swords and all("scimitar" in a["prompt"] for a in swords)
    tagged = client.get("/api/v1/assets", params={"category": "weapon", "tag": "sword,weapon"}, headers=token("viewer"))
    assert {a["category"] for a in tagged.json()["assets"]} == {"weapon"}
    for name, user, found in (("owner", "creator@studio.example", 3), ("creator", "creator@studio.example", 3),
                              ("owner", "viewer@studio.example", 0)):
        by_person = client.get("/api/v1/assets", params={"batch": world.key, name: user}, headers=token("viewer"))
        assert len(by_person.json()["assets"]) == found, name
    posted = client.post("/api/v1/assets/search", json={"batch": world.key, "min_score": 0.0, "sort": "date"},
                         headers=token("viewer")).json()["assets"]
    assert len(posted) == 3
    like = client.get("/api/v1/assets", params={"like": every[0]["id"]}, headers=token("viewer")).json()["assets"]
    assert every[0]["id"] not in [a["id"] for a in like] and all("similarity" in a for a in like)
    bad = client.get("/api/v1/assets", params={"min_score": "high"}, headers=token("viewer"))
    assert bad.status_code == 400 and "filter min_score" in bad.json()["error"]
    # A `like` that is not a catalogued image is refused, never read as a file on the server.
    file_like = client.get("/api/v1/assets", params={"like": "/etc/hostname"}, headers=token("viewer"))
    assert file_like.status_code == 400 and "no catalogued image" in file_like.json()["error"]


def test_one_asset_with_tags_scores_and_versions(client, world):
    first = assets(world)[0]
    detail = client.get(f"/api/v1/assets/{first['id']}", headers=token("viewer")).json()
    assert detail["asset"]["id"] == first["id"] and detail["asset"]["image_url"] == f"/files/{first['raw_key']}"
    assert len(detail["tags"]) >= 5 and all(0 <= t["confidence"] <= 1 and t["source"] for t in detail["tags"])
    assert set(detail["versions"]["versions"][0]["scores"]) == {"palette", "lighting", "composition", "texture", "embedding"}
    assert detail["variation"] == 1 and detail["variant_id"]


def test_reviews_then_a_zip_of_the_approved_and_the_download_history(client, world):
    ids = [a["id"] for a in assets(world)]
    answer = client.post("/api/v1/reviews", json={"asset_ids": ids[:2], "decision": "approved"}, headers=token("creator"))
    assert answer.json() == {"reviewed": 2, "decision": "approved"}
    approved = client.get("/api/v1/assets", params={"batch": world.key, "review": "approved"}, headers=token("viewer"))
    assert sorted(a["id"] for a in approved.json()["assets"]) == sorted(ids[:2])
    bad = client.post("/api/v1/reviews", json={"asset_ids": ids[:1], "decision": "maybe"}, headers=token("creator"))
    assert bad.status_code == 400
    malformed = client.post("/api/v1/reviews", json={"asset_ids": ["no-batch-part"], "decision": "approved"},
                            headers=token("creator"))
    assert malformed.status_code == 400 and "{batch}/{image_id}" in malformed.json()["error"]
    package = client.post("/api/v1/exports", json={"asset_ids": ids[:2]}, headers=token("viewer"))
    assert package.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(package.content)).namelist()
    rows = {a["id"]: a for a in assets(world)}
    assert sorted(names) == sorted([f"{world.key}/{rows[i]['file_name']}" for i in ids[:2]] + ["manifest.csv"])
    history = client.get("/api/v1/downloads", headers=token("viewer")).json()["downloads"]
    assert history[0]["target"] == world.key and history[0]["kind"] == "zip" and history[0]["user"] == "viewer-script"
    # A viewer sees only their own downloads; an admin sees everyone's.
    client.get(f"/assets/{ids[0]}/download?format=jpeg", headers=token("creator"))
    assert all(d["user"] == "viewer-script" for d in client.get("/api/v1/downloads", headers=token("viewer")).json()["downloads"])
    everyone = client.get("/api/v1/downloads", headers=token("admin")).json()["downloads"]
    assert {"viewer-script", "creator-script"} <= {d["user"] for d in everyone}
    activity = client.get("/api/v1/activity", params={"target": world.key}, headers=token("admin")).json()["activity"]
    assert {"review.approved"} <= {e["action"] for e in activity}
    client.post("/api/v1/reviews", json={"asset_ids": ids, "decision": "clear"}, headers=token("creator"))


def test_export_approved_rewrites_the_package_with_the_approved_images(client, world):
    ids = [a["id"] for a in assets(world)]
    client.post("/api/v1/reviews", json={"asset_ids": ids[:1], "decision": "approved"}, headers=token("creator"))
    answer = client.post(f"/api/v1/batches/{world.key}/export-approved", headers=token("creator")).json()
    assert answer["images"] == 1 and answer["files"]["zip"].endswith(".zip")
    package = zipfile.ZipFile(io.BytesIO(world.storage.read_bytes(world.catalog.batch_exports(world.key)["zip"])))
    assert len([n for n in package.namelist() if n.endswith(".png")]) == 1
    files = client.get(f"/api/v1/exports/{world.key}", headers=token("viewer")).json()["files"]
    assert files["zip"] == f"/batches/{world.key}/exports/zip"
    client.post("/api/v1/reviews", json={"asset_ids": ids, "decision": "clear"}, headers=token("creator"))


def test_a_batch_whose_images_the_retention_deleted_is_not_exported_again(client, world):
    from resources.catalog_models import BatchEntry

    world.catalog.upsert_batch(BatchEntry(key="old-0000aaaa", name="old", status="expired", images_stored=3))
    for path, body in (("export-approved", None), ("export", {"exports": ["manifest"], "export_only": "all"})):
        answer = client.post(f"/api/v1/batches/old-0000aaaa/{path}", json=body, headers=token("creator"))
        assert answer.status_code == 409
        assert "images were deleted by the retention; its packages stay as they are" in answer.json()["error"]
    world.catalog.delete_batch("old-0000aaaa")


def test_export_preset_writes_only_the_chosen_formats_of_the_approved_images(client, world):
    rows = assets(world)
    ids = [a["id"] for a in rows]
    client.post("/api/v1/reviews", json={"asset_ids": ids[1:2], "decision": "approved"}, headers=token("creator"))
    preset = {"exports": ["manifest", "gallery"], "export_only": "approved"}
    assert client.post(f"/api/v1/batches/{world.key}/export", json=preset, headers=token("viewer")).status_code == 403
    answer = client.post(f"/api/v1/batches/{world.key}/export", json=preset, headers=token("creator")).json()
    assert (answer["images"], answer["exports"], set(answer["files"])) == (1, ["manifest", "gallery"], {"manifest", "gallery"})
    # The catalog lists the new package's files only: the library no longer offers the older ZIP.
    exported = world.catalog.batch_exports(world.key)
    assert set(exported) == {"manifest", "gallery"}
    manifest = json.loads(world.storage.read_bytes(exported["manifest"]))
    assert [i["file_name"] for i in manifest["images"]] == [rows[1]["file_name"]]
    assert client.get(f"/batches/{world.key}/exports/zip", headers=token("viewer")).status_code == 404
    bad = client.post(f"/api/v1/batches/{world.key}/export", json={"exports": ["pdf"]}, headers=token("creator"))
    assert bad.status_code == 400 and "'pdf' is not a format of the package" in bad.json()["error"]
    only = client.post(f"/api/v1/batches/{world.key}/export", json={"export_only": "some"}, headers=token("creator"))
    assert only.status_code == 400 and "export_only must be one of all, approved" in only.json()["error"]
    # Without a preset: the batch's own formats, every image (the package as the run wrote it).
    back = client.post(f"/api/v1/batches/{world.key}/export", json={}, headers=token("creator")).json()
    assert back["images"] == 3 and set(back["exports"]) == {"zip", "manifest", "gallery", "links"}
    assert set(world.catalog.batch_exports(world.key)) == set(back["files"]) >= {"zip", "manifest", "gallery"}
    activity = client.get("/api/v1/activity", params={"target": world.key}, headers=token("admin")).json()["activity"]
    assert [e["detail"] for e in activity if e["action"] == "export.preset"][:2] == [
        "3 image(s) (all) as zip, manifest, gallery, links", "1 image(s) (approved) as manifest, gallery"]
    client.post("/api/v1/reviews", json={"asset_ids": ids, "decision": "clear"}, headers=token("creator"))


def test_styles_created_from_uploads_with_a_palette_and_edited_as_new_versions(client, world):
    refs = sorted((EXAMPLE / "references").iterdir())
    files = [("references", (p.name, p.read_bytes(), "image/png")) for p in refs[:2]]
    created = client.post("/api/v1/styles", data={"name": "brand-api", "lock_palette": "80", "threshold": "0.8"},
                          files=files, headers=token("creator"))
    assert created.status_code == 201, created.text
    spec = created.json()
    assert (spec["ref"], spec["locks"], spec["threshold"]) == ("brand-api@1", {"palette": 80}, 0.8)
    assert len(spec["palette"]) >= 1 and abs(sum(c["share"] for c in spec["palette"]) - 1) < 0.01
    assert client.get(spec["reference_urls"][0], headers=token("viewer")).status_code == 200
    edited = client.put("/api/v1/styles/brand-api", json={"locks": {"lighting": 50}, "threshold": 0.9},
                        headers=token("creator")).json()
    assert (edited["ref"], edited["locks"], edited["threshold"]) == ("brand-api@2", {"lighting": 50}, 0.9)
    assert [r["sha256"] for r in edited["references"]] == [r["sha256"] for r in spec["references"]]
    assert client.get("/api/v1/styles/brand-api", params={"version": 1}, headers=token("viewer")).json()["versions"] == [1, 2]
    assert "brand-api" in [s["name"] for s in client.get("/api/v1/styles", headers=token("viewer")).json()["styles"]]
    # References are checked like a batch's references/: a text file named .png is refused by kind.
    bad = client.post("/api/v1/styles", data={"name": "brand-bad"},
                      files=[("references", ("fake.png", b"not an image", "image/png"))], headers=token("creator"))
    assert bad.status_code == 422 and "fake.png" in bad.json()["problems"][0]["file"]
    unknown = client.put("/api/v1/styles/brand-api", json={"locks": {"colour": 5}}, headers=token("creator"))
    assert unknown.status_code == 400 and "colour" in unknown.json()["error"]


def test_a_bad_upload_is_refused_with_every_problem_by_row_and_column(client):
    csv = b"variant_id,prompt\nsword-01,a sword\nsword-01,\n"
    answer = client.post("/api/v1/batches", files={"csv": ("items.csv", csv, "text/csv")}, headers=token("creator"))
    assert answer.status_code == 422
    problems = {(p["file"], p["row"], p["column"]) for p in answer.json()["problems"]}
    assert ("batch.csv", 3, "variant_id") in problems and ("batch.csv", 3, "prompt") in problems
    dry = client.post("/api/v1/batches", params={"dry_run": "1"}, headers=token("creator"),
                      files={"csv": ("items.csv", b"variant_id,prompt\nsword-01,a sword\n", "text/csv")})
    assert dry.status_code == 200 and dry.json()["preview"]["images"] == 1 and dry.json()["preview"]["prompts"]


def test_admins_transfer_and_delete_batches(client, world):
    from harness.sample_batches import make_batch

    key = register_batch(world.storage, make_batch(world.root / "admin", rows=1, name="to-delete"), creator="bo").key
    moved = client.put(f"/api/v1/batches/{key}/owner", json={"owner": "cy@studio.example"}, headers=token("admin"))
    assert moved.json() == {"key": key, "owner": "cy@studio.example"}
    gone = client.delete(f"/api/v1/batches/{key}", headers=token("admin"))
    assert gone.json() == {"deleted": key}
    assert client.delete(f"/api/v1/batches/{key}", headers=token("admin")).status_code == 404


def test_the_openapi_document_lists_every_operation_with_its_role(client, app):
    spec = client.get("/api/v1/openapi.json", headers=token("viewer")).json()
    assert spec["info"]["title"] == "AssetQL asset library API"
    operations = {(path, method): op for path, ops in spec["paths"].items() for method, op in ops.items()}
    assert operations["/api/v1/batches", "post"]["x-required-role"] == "creator"
    assert operations["/api/v1/batches/{key}", "delete"]["x-required-role"] == "admin"
    assert operations["/api/v1/assets", "get"]["x-required-role"] == "viewer"
    assert all(op["summary"] and "403" in op["responses"] for op in operations.values())
    # Every API route but the document itself.
    api_routes = [r for r in app.routes if r.path.startswith("/api/v1/") and r.path != "/api/v1/openapi.json"]
    assert len(operations) == len(api_routes) >= 26
    assert operations["/api/v1/assets/regenerate", "post"]["x-required-role"] == "creator"
    assert operations["/api/v1/batches/{key}/export", "post"]["x-required-role"] == "creator"
    docs = client.get("/api/docs", headers=token("viewer"))
    assert "/api/v1/assets/{batch}/{image}/regenerate" in docs.text and docs.text.count('class="method"') == len(api_routes)


def test_regenerate_then_roll_back_each_re_exports_the_batch(client, world, launcher):
    first = assets(world)[0]
    before = launcher.latest_run(world.key)
    answer = client.post(f"/api/v1/assets/{first['id']}/regenerate", json={"seed": 5, "style_strength": 0.5},
                         headers=token("creator"))
    assert answer.status_code == 202  # generated after the answer; the re-export run is launched then
    regenerated = wait_for_run(launcher, world.key, after=before and before.run_id)
    assert regenerated.status == "SUCCESS"
    row = world.catalog.get_asset(first["id"])
    assert row["current_version"] == 2
    assert [(v["version"], v["seed"], v["reason"]) for v in world.catalog.asset_versions(first["id"])][-1] == (2, 5, "manual")
    shown = client.get(f"/api/v1/assets/{first['id']}", headers=token("viewer")).json()["versions"]
    assert shown["current"] == 2 and shown["pinned"] and shown["manual_regenerations"]["used"] == 1
    rolled = client.post(f"/api/v1/assets/{first['id']}/rollback", json={"version": 1}, headers=token("creator"))
    assert rolled.json() == {"asset": first["id"], "version": 1}
    assert wait_for_run(launcher, world.key, after=regenerated.run_id).status == "SUCCESS"
    assert world.catalog.get_asset(first["id"])["current_version"] == 1
    actions = [e["action"] for e in client.get("/api/v1/activity", params={"target": first["id"]},
                                                headers=token("admin")).json()["activity"]]
    assert actions[:2] == ["version.rollback", "version.regenerate"]
    # Out of range, or a version that does not exist, changes nothing.
    assert client.post(f"/api/v1/assets/{first['id']}/rollback", json={"version": 7}, headers=token("creator")).status_code == 400
    bad = client.post(f"/api/v1/assets/{first['id']}/regenerate", json={"style_strength": 3}, headers=token("creator"))
    assert bad.status_code == 400 and "style-strength must be from 0 to 1" in bad.json()["error"]


def test_regeneration_without_a_generator_says_so(world, launcher, tmp_path):
    bare = TestClient(create_app(library_config(), world.storage, world.catalog, launcher, uploads=tmp_path, secret="s"),
                      client=(PROXY, 1))
    first = assets(world)[0]
    answer = bare.post(f"/api/v1/assets/{first['id']}/regenerate", json={"seed": 5}, headers=token("creator"))
    assert answer.status_code == 503 and "assetql regenerate" in answer.json()["error"]
    bulk = bare.post("/api/v1/assets/regenerate", json={"asset_ids": [first["id"]]}, headers=token("creator"))
    assert bulk.status_code == 503 and "assetql regenerate" in bulk.json()["error"]


def test_bulk_regenerate_makes_one_new_version_of_each_image(client, world, launcher):
    chosen = [a["id"] for a in assets(world)[1:]]
    before = {i: world.catalog.get_asset(i)["current_version"] for i in chosen}
    assert client.post("/api/v1/assets/regenerate", json={"asset_ids": chosen}, headers=token("viewer")).status_code == 403
    none = client.post("/api/v1/assets/regenerate", json={"asset_ids": []}, headers=token("creator"))
    assert none.status_code == 400 and "select at least one image" in none.json()["error"]
    last = launcher.latest_run(world.key)
    answer = client.post("/api/v1/assets/regenerate", json={"asset_ids": chosen}, headers=token("creator"))
    assert answer.status_code == 202 and answer.json() == {"regenerating": chosen}
    assert wait_for_run(launcher, world.key, after=last and last.run_id).status == "SUCCESS"  # one re-export
    for asset_id in chosen:
        assert world.catalog.get_asset(asset_id)["current_version"] == before[asset_id] + 1
        assert world.catalog.asset_versions(asset_id)[-1]["reason"] == "manual"
    activity = client.get("/api/v1/activity", params={"user": "creator-script"}, headers=token("admin")).json()["activity"]
    assert sorted(e["target"] for e in activity[:2] if e["action"] == "version.regenerate") == sorted(chosen)


def test_a_jpeg_download_is_a_jpeg_of_the_image(client, world):
    first = assets(world)[0]
    answer = client.get(f"/assets/{first['id']}/download?format=jpeg", headers=token("viewer"))
    assert answer.headers["content-type"] == "image/jpeg"
    assert 'filename="' + first["file_name"].removesuffix(".png") + '.jpg"' in answer.headers["content-disposition"]
    assert Image.open(io.BytesIO(answer.content)).size == (first["width"], first["height"])
