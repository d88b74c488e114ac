"""The asset library in a real browser (Playwright driving Debian's chromium, no browser download):
a bad upload shows its problems by row and column, the fixed upload runs to the end on the tiny
model, the grid shows the thumbnails, a filter narrows it, the asset page approves an image, the
selection downloads as a ZIP, and quick generate fills its 2×2 grid. Each page is photographed into
the test's folder, and also into the folder $ASSETQL_SCREENSHOTS names (docs/screenshots/ to
refresh the README's pictures: `ASSETQL_SCREENSHOTS=docs/screenshots ./scripts/test
tests/assetql_dagster/library/test_browser.py`)."""

from __future__ import annotations

import os
import shutil
import threading
import time
import zipfile
from pathlib import Path

import dagster as dg
import pytest
import uvicorn
from harness.sample_batches import EXAMPLE
from PIL import Image

from assetql_dagster.defs.launching import InstanceLauncher
from assetql_dagster.library.app import create_app
from assetql_dagster.library.config import parse_config
from resources.catalog import AssetCatalog, sqlite_url_beside
from resources.storage import LocalStorage

ROOT = Path(__file__).resolve().parents[3]
# Where else the screenshots go (relative to the repository), when asked: a test run must not
# rewrite tracked files by itself.
SCREENSHOTS = ROOT / os.environ["ASSETQL_SCREENSHOTS"] if os.environ.get("ASSETQL_SCREENSHOTS") else None
CHROMIUM = "/usr/bin/chromium"
PERSON = {"X-Forwarded-Email": "maya@studio.example", "X-Forwarded-Groups": "artists"}
RUN_TIMEOUT_MS = 300_000


def chromium() -> str:
    found = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    if found is None:
        pytest.fail("Debian's chromium is missing: install the Debian package chromium "
                    "(apt-get install chromium; ./scripts/test does it when run as root)", pytrace=False)
    return found


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """The library served by uvicorn on a free loopback port, over fresh storage and catalog, launching
    runs on a throwaway instance whose code location uses them; signed in as a creator by the proxy."""
    root = tmp_path_factory.mktemp("browser")
    data = root / "data"
    storage, catalog = LocalStorage(root=str(data)), AssetCatalog(url=sqlite_url_beside(data))
    catalog.migrate()
    config = parse_config({"trusted_proxies": ["127.0.0.1"], "roles": {"groups": {"artists": "creator"}}}, "library.yaml")
    coordinator = {"module": "dagster._core.run_coordinator", "class": "DefaultRunCoordinator"}
    with pytest.MonkeyPatch.context() as env, dg.instance_for_test(overrides={"run_coordinator": coordinator}) as instance:
        env.setenv("ASSETQL_DATA_DIR", str(data))
        env.delenv("ASSETQL_CATALOG_URL", raising=False)
        with InstanceLauncher(instance, working_directory=str(root)) as launcher:
            app = create_app(config, storage, catalog, launcher, uploads=root / "uploads", secret="browser-test")
            server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", proxy_headers=False))
            thread = threading.Thread(target=server.run, daemon=True)
            thread.start()
            while not server.started:
                time.sleep(0.05)
            port = server.servers[0].sockets[0].getsockname()[1]
            yield f"http://127.0.0.1:{port}", root, catalog
            server.should_exit = True
            thread.join(10)


@pytest.fixture(scope="module")
def page(library):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox", "--disable-gpu"])
        context = browser.new_context(viewport={"width": 1280, "height": 860}, extra_http_headers=PERSON,
                                      accept_downloads=True)
        page = context.new_page()
        page.set_default_timeout(30_000)
        yield page
        browser.close()


def shoot(page, folder: Path, name: str) -> None:
    """A screenshot of the whole page, in the test's folder and in SCREENSHOTS when set (there in 256
    colours: a third of the bytes, which the tiny model's noise images would otherwise take)."""
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 0
    if SCREENSHOTS is None:
        return
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with Image.open(path) as shot:
        small = shot.convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    small.save(SCREENSHOTS / f"{name}.png", optimize=True)


def test_upload_fix_run_review_download_and_quick_generate(library, page, tmp_path):
    base, root, catalog = library
    shots = tmp_path / "screenshots"

    # A CSV with a repeated variant id and an empty prompt: every problem, by row and column.
    bad = root / "bad.csv"
    bad.write_text("variant_id,prompt\nsword-01,a steel sword\nsword-01,\n")
    page.goto(f"{base}/batches/new")
    shoot(page, shots, "01-new-batch")
    page.set_input_files("#b-csv", str(bad))
    page.click("text=Check and preview")
    page.wait_for_load_state()
    problems = page.locator("table.problems tbody tr")
    assert problems.count() >= 2
    rows = [problems.nth(i).inner_text() for i in range(problems.count())]
    assert any(r.startswith("batch.csv\t3\tvariant_id") for r in rows), rows
    assert any(r.startswith("batch.csv\t3\tprompt") for r in rows), rows
    assert page.locator("text=Submit batch").count() == 0
    shoot(page, shots, "02-upload-problems")

    # The fixed upload, with the sample's references, a name and two steps (the tiny model).
    fixed = root / "fixed.csv"
    fixed.write_text("variant_id,prompt,category\n"
                     "sword-01,a steel longsword with a leather grip,weapon/sword\n"
                     "sword-02,a curved scimitar of damascus steel,weapon/sword\n"
                     "potion-01,a glowing red health potion in a glass flask,potion/health\n")
    page.set_input_files("#b-csv", str(fixed))
    page.set_input_files("#b-refs", [str(p) for p in sorted((EXAMPLE / "references").iterdir())[:2]])
    page.fill("#b-name", "spring-items")
    page.click("text=All settings")
    page.fill("#b-steps", "2")
    page.click("text=Check and preview")
    page.wait_for_load_state()
    problems = [problems.nth(i).inner_text() for i in range(problems.count())]
    assert problems == [] and page.locator("h2:text('Ready to run')").is_visible()
    assert page.locator("ol.prompts li").count() == 3
    shoot(page, shots, "03-preview")
    page.click("text=Submit batch")
    page.wait_for_url(f"{base}/batches/spring-items-*")
    assert page.locator(".notice").inner_text().startswith("Batch submitted")

    # The page follows the run and shows the images when it has catalogued them.
    page.wait_for_selector(".tile img", timeout=RUN_TIMEOUT_MS)
    page.wait_for_function("() => Array.from(document.querySelectorAll('.tile img')).every(i => i.complete && i.naturalWidth > 0)")
    assert page.locator(".tile").count() == 3
    key = page.url.rsplit("/", 1)[1].split("?")[0]
    shoot(page, shots, "04-batch-grid")

    # Filter by a category the batch has.
    page.select_option("#f-category", "weapon")
    page.click("button:text('Apply')")
    expected = len(catalog.search(None, batch=key, category="weapon"))
    assert 0 < page.locator(".tile").count() == expected < 3
    shoot(page, shots, "05-batch-filtered")

    # The asset page; approve it there.
    page.locator(".tile a.name").first.click()
    page.wait_for_url(f"{base}/assets/{key}/*")
    asset_id = page.url.split("/assets/", 1)[1]
    assert page.locator("h2:text('Versions')").is_visible() and page.locator(".tag").count() >= 5
    shoot(page, shots, "06-asset")
    page.click("button:text('Approve')")
    assert page.locator(".notice").inner_text() == "Review saved for 1 image(s)."
    assert catalog.get_asset(asset_id)["review"] == "approved"

    # Back to the batch: select every image and download them as one ZIP.
    page.goto(f"{base}/batches/{key}?view=list")
    page.check("[data-select-all]")
    assert page.locator("[data-count]").inner_text() == "3 selected"
    shoot(page, shots, "07-batch-list-selected")
    with page.expect_download() as download:
        page.click("button:text('Download ZIP')")
    archive = tmp_path / "selection.zip"
    download.value.save_as(archive)
    names = zipfile.ZipFile(archive).namelist()
    assert len([n for n in names if n.endswith(".png")]) == 3 and "manifest.csv" in names

    # Search by a word of the prompts.
    page.goto(f"{base}/search?q=sword")
    assert page.locator(".tile").count() >= 1
    shoot(page, shots, "08-search")

    # Quick generate: four variations in a 2×2 grid, placeholders while they are made.
    page.goto(f"{base}/generate")
    page.fill("#prompt", "a glowing crystal sword on a stone altar")
    page.click("button:text('Generate')")
    page.wait_for_url(f"{base}/generate/quick-*")
    if page.locator(".placeholder").count():  # still being made: four places wait for the images
        assert page.locator(".placeholder").count() == 4
        shoot(page, shots, "09-quick-generate-loading")
    page.wait_for_selector(".quad .cell img", timeout=RUN_TIMEOUT_MS)
    assert page.locator(".quad .cell img").count() == 4
    assert page.locator(".quad .cell a:text('Download')").count() == 4
    shoot(page, shots, "10-quick-generate")
    # "Generate more": four more below the first four, which stay.
    first = page.locator(".quad .cell img").first.get_attribute("src")
    page.click("button:text('Generate more')")
    page.wait_for_function("() => document.querySelectorAll('.quad .cell img').length === 8", timeout=RUN_TIMEOUT_MS)
    assert page.locator(".quad").count() == 2 and page.locator(".quad .cell img").first.get_attribute("src") == first

    # A style profile from uploaded references: its palette is shown, and an edit makes version 2.
    page.goto(f"{base}/styles")
    page.fill("#s-name", "brand-spring")
    references = sorted((EXAMPLE / "references").iterdir())
    page.set_input_files("#s-refs", [str(p) for p in references])
    assert page.locator("#s-previews img").count() == len(references)  # shown before anything is sent
    page.click("text=Locks and threshold")
    page.fill("#s-lock-palette", "80")
    page.click("button:text('Save profile')")
    page.wait_for_url(f"{base}/styles/brand-spring*")
    assert page.locator("svg.palette rect").count() >= 2 and page.locator(".refs img").count() == len(references)
    page.fill("#e-threshold", "0.8")
    page.click("button:text('Save as v2')")
    assert page.locator("h1 .badge").inner_text() == "v2"
    assert "threshold: the batch's own -> 0.8" in page.locator("text=Changed from v1").locator("..").inner_text()
    shoot(page, shots, "12-style-profile")

    # The batches page lists both, with their covers.
    page.goto(f"{base}/batches")
    assert page.locator(".batch-row").count() == 2
    shoot(page, shots, "11-batches")
