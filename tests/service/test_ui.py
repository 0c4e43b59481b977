"""The web page in a real browser (Debian's chromium driven by Playwright) against real uvicorn and ONNX models.

One service and one browser for the module; each test gets a fresh browser context (its own sessionStorage) and
checks, besides its own subject, that no request left the service's origin and that the console stayed clean.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from service.app import create_app
from service.settings import Settings
from service.ui import CONTENT_SECURITY_POLICY
from tests.service.conftest import TinyModels
from tests.service.support import files, image_bytes, uvicorn_server

playwright_api = pytest.importorskip("playwright.sync_api", reason="the browser tests need the playwright package")
CHROMIUM = shutil.which("chromium")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (scripts/test.sh installs it)"),
]

WRITE_KEY = "page-write-key"
VISIBLE_ITEMS = 8
CROP_SIZE = (32, 64)  # width, height: person-shaped


@dataclass(frozen=True)
class Site:
    """The running service and the files the tests upload."""

    url: str
    crops: Path  # a folder of crops to upload


@pytest.fixture(scope="module")
def site(tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The service behind uvicorn with an API key, its gallery holding visible crops of a few labels."""
    tmp = tmp_path_factory.mktemp("ui")
    settings = Settings(
        model_dir=tiny_models.model_dir,
        data_dir=tmp / "gallery",
        providers=("CPUExecutionProvider",),
        intra_op_threads=1,
        api_key=WRITE_KEY,
    )
    crops = tmp / "crops"
    crops.mkdir()
    for seed in range(4):
        (crops / f"ir_{seed}.png").write_bytes(image_bytes(100 + seed, size=CROP_SIZE))
    (crops / "notes.txt").write_text("not an image\n")
    with uvicorn_server(create_app(settings)) as url:
        payloads = [image_bytes(seed, size=CROP_SIZE) for seed in range(VISIBLE_ITEMS)]
        metadata = json.dumps([{"label": f"p{i % 3}", "camera": f"cam{1 + i % 2}"} for i in range(VISIBLE_ITEMS)])
        added = httpx.post(
            f"{url}/gallery",
            params={"modality": "vis"},
            files=files(*payloads),
            data={"metadata": metadata},
            headers={"X-API-Key": WRITE_KEY},
            timeout=120,
        )
        assert added.status_code == 201, added.text
        yield Site(url, crops)


@pytest.fixture(scope="module")
def browser() -> Iterator[playwright_api.Browser]:
    """Chromium, headless, for the whole module."""
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM)
        yield browser
        browser.close()


@dataclass
class Watch:
    """What a page did besides its visible effects: every request URL and every console error."""

    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)


@pytest.fixture
def page(browser: playwright_api.Browser, site: Site) -> Iterator[tuple[playwright_api.Page, Watch]]:
    """A page on ``/`` in a fresh context; afterwards, no request may have left the origin."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    watch = Watch()
    page.on("request", lambda r: watch.requests.append(r.url))
    page.on("console", lambda m: watch.console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: watch.console_errors.append(f"uncaught: {e}"))
    response = page.goto(f"{site.url}/")
    assert response is not None and response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    yield page, watch
    context.close()
    foreign = [u for u in watch.requests if not (u.startswith(f"{site.url}/") or u.startswith(f"blob:{site.url}/"))]
    assert watch.requests and not foreign, foreign


def expect() -> playwright_api.Expect:
    return playwright_api.expect


def all_images_loaded(page: playwright_api.Page, selector: str) -> list[int]:
    """The natural widths of the images under ``selector``, once each has been given its source and loaded."""
    page.wait_for_function(
        "(sel) => [...document.querySelectorAll(sel + ' img')].every((img) => img.src && img.complete)", arg=selector
    )
    widths: list[int] = page.eval_on_selector_all(f"{selector} img", "(imgs) => imgs.map((img) => img.naturalWidth)")
    return widths


def drop_files(page: playwright_api.Page, selector: str, paths: list[Path]) -> None:
    """Drop ``paths`` on the element as a drag and drop from the desktop does (a drop event carrying the files)."""
    payload = [(path.name, base64.b64encode(path.read_bytes()).decode()) for path in paths]
    transfer = page.evaluate_handle(
        """(files) => {
            const transfer = new DataTransfer();
            for (const [name, data] of files) {
                const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
                transfer.items.add(new File([bytes], name, { type: "image/png" }));
            }
            return transfer;
        }""",
        payload,
    )
    page.dispatch_event(selector, "drop", {"dataTransfer": transfer})


def test_an_infrared_search_shows_matches_whose_thumbnails_loaded(
    page: tuple[playwright_api.Page, Watch], site: Site
) -> None:
    p, watch = page
    search = p.get_by_role("tabpanel", name="Search")
    search.get_by_label("Query image", exact=True).set_input_files(site.crops / "ir_0.png")
    search.get_by_label("Modality", exact=True).select_option("ir")
    search.get_by_label("Top k", exact=True).fill("6")
    search.get_by_role("button", name="Search").click()
    matches = p.get_by_role("list", name="Matches").get_by_role("listitem")
    expect()(matches).to_have_count(6)
    widths = all_images_loaded(p, "#matches")
    assert len(widths) == 6 and all(w == CROP_SIZE[0] for w in widths), widths  # the stored JPEGs, really shown
    assert all_images_loaded(p, "#query-crops") == [CROP_SIZE[0]]  # the query crop beside the matches
    expect()(matches.first).to_contain_text("label p")
    expect()(matches.first).to_contain_text("camera cam")
    expect()(p.get_by_text(re.compile(r"^#1 · \d\.\d{3}$"))).to_be_visible()

    search.get_by_label("Label", exact=True).fill("p1")  # a filter: only that label's items match
    search.get_by_role("button", name="Search").click()
    expect()(matches).to_have_count(3)
    for i in range(3):
        expect()(matches.nth(i)).to_contain_text("label p1")

    matches.first.get_by_role("button").click()
    dialog = p.get_by_role("dialog")
    expect()(dialog).to_be_visible()
    expect()(dialog).to_contain_text("p1")
    expect()(dialog).to_contain_text("vis (visible)")
    dialog.get_by_role("button", name="Close").click()
    expect()(dialog).to_be_hidden()
    assert watch.console_errors == []


def test_add_and_delete_through_the_page(page: tuple[playwright_api.Page, Watch], site: Site) -> None:
    p, watch = page
    p.get_by_role("tab", name="Add crops").click()
    add = p.get_by_role("tabpanel", name="Add crops")
    drop_files(p, "#dropzone", [site.crops / "ir_1.png", site.crops / "ir_2.png"])
    expect()(add.get_by_text("2 files chosen")).to_be_visible()
    add.get_by_label("Modality", exact=True).select_option("ir")
    add.get_by_label("Label", exact=True).fill("added-here")
    add.get_by_label("Camera", exact=True).fill("gate-9")
    add.get_by_role("button", name="Add to gallery").click()
    expect()(add.get_by_role("alert")).to_contain_text("API key needed")  # writes need the key
    p.get_by_label("API key", exact=True).fill(WRITE_KEY)
    add.get_by_role("button", name="Add to gallery").click()
    expect()(add.get_by_role("status")).to_contain_text("Added 2 crops to the infrared gallery")
    expect()(add.get_by_role("alert")).to_be_hidden()
    assert p.evaluate("() => Number(document.getElementById('add-progress').value)") == 100
    assert p.evaluate("() => sessionStorage.getItem('vireid.apiKey')") == WRITE_KEY
    assert p.evaluate("() => localStorage.length") == 0  # the key is kept for the tab only
    listed = httpx.get(f"{site.url}/gallery", params={"modality": "ir"}).json()["items"]
    ids = [i["id"] for i in listed if i["label"] == "added-here" and i["camera"] == "gate-9"]
    assert len(ids) == 2

    p.get_by_role("tab", name="Gallery").click()
    gallery = p.get_by_role("tabpanel", name="Gallery")
    gallery.get_by_label("Label", exact=True).fill("added-here")
    gallery.get_by_role("button", name="Filter").click()
    items = p.get_by_role("list", name="Gallery items").get_by_role("listitem")
    expect()(items).to_have_count(2)
    assert all_images_loaded(p, "#gallery-items") == [CROP_SIZE[0]] * 2
    expect()(gallery.get_by_text(re.compile(rf"visible {VISIBLE_ITEMS} · infrared 2"))).to_be_visible()
    items.first.get_by_role("button").click()
    p.get_by_role("button", name="Delete…").click()
    confirm = p.get_by_role("dialog", name=f"Delete item {ids[0]}?")
    expect()(confirm).to_be_visible()
    confirm.get_by_role("button", name="Cancel").click()  # asks first: cancelling keeps the item
    assert httpx.get(f"{site.url}/gallery/{ids[0]}").status_code == 200
    p.get_by_role("button", name="Delete…").click()
    confirm.get_by_role("button", name="Delete", exact=True).click()
    expect()(items).to_have_count(1)
    assert httpx.get(f"{site.url}/gallery/{ids[0]}").status_code == 404
    assert httpx.get(f"{site.url}/gallery/{ids[0]}/thumbnail").status_code == 404
    httpx.delete(f"{site.url}/gallery/{ids[1]}", headers={"X-API-Key": WRITE_KEY}).raise_for_status()
    # the refused add is the one failed request, which chromium reports on the console
    assert len(watch.console_errors) == 1 and "401" in watch.console_errors[0], watch.console_errors


def test_a_non_image_gets_a_readable_message(page: tuple[playwright_api.Page, Watch], site: Site) -> None:
    p, watch = page
    search = p.get_by_role("tabpanel", name="Search")
    search.get_by_label("Query image", exact=True).set_input_files(site.crops / "notes.txt")
    search.get_by_role("button", name="Search").click()
    alert = search.get_by_role("alert")
    expect()(alert).to_contain_text("Not an image: notes.txt: not a decodable image")
    expect()(p.get_by_role("list", name="Matches").get_by_role("listitem")).to_have_count(0)
    assert len(watch.console_errors) == 1 and "415" in watch.console_errors[0], watch.console_errors


def test_each_form_gets_its_own_copy_of_the_shared_fields(page: tuple[playwright_api.Page, Watch]) -> None:
    p, watch = page
    expect()(p.locator("#gallery-camera")).to_be_attached()
    assert p.locator("[data-item-fields]").count() == 0  # every placeholder replaced by its fields
    ids = p.eval_on_selector_all("[id]", "(elements) => elements.map((e) => e.id)")
    assert len(ids) == len(set(ids)), ids
    forms = {  # prefix: modalities offered (the first selected), label hint, camera hint
        "search": (["ir", "vis"], "any", "any"),
        "gallery": (["", "vis", "ir"], "any", "any"),
        "add": (["vis", "ir"], "person id, optional", "optional"),
    }
    for prefix, (modalities, label_hint, camera_hint) in forms.items():
        modality = p.locator(f"#{prefix}-modality")
        assert modality.evaluate("(select) => [...select.options].map((o) => o.value)") == modalities, prefix
        expect()(modality).to_have_value(modalities[0])
        expect()(p.locator(f"#{prefix}-label")).to_have_attribute("placeholder", label_hint)
        expect()(p.locator(f"#{prefix}-camera")).to_have_attribute("placeholder", camera_hint)
        for name, text in (("modality", "Modality"), ("label", "Label"), ("camera", "Camera")):
            tied = p.eval_on_selector(f"#{prefix}-{name}", "(control) => [...control.labels].map((l) => l.textContent)")
            assert tied == [text], (prefix, name)
            assert p.locator(f"#{prefix}-{name}").evaluate("(c) => c.form.id") == f"{prefix}-form"
    assert not watch.console_errors, watch.console_errors
