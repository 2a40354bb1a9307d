"""Against a real `streamlit run`: hostile uploads through the browser, and sessions kept apart.

One server (loopback, private cache and session root) for the module; every upload goes
through the real file inputs and Streamlit's upload endpoint.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

from conftest import REPO
from hostile import corpus
from live_server import (CHROMIUM, DONE, ERROR, EXCEPTION, IDLE, LAUNCH_ARGS, SUMMARY_JS, health_seconds, stage_files,
                         streamlit_server)

pytestmark = pytest.mark.browser


def _repo_state() -> str:
    return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all", "--", ".", ":!artifacts"],
                          cwd=REPO, capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    root = tmp_path_factory.mktemp("sessions")
    env = {"QUANT_CACHE_DIR": str(tmp_path_factory.mktemp("cache")), "QW_SESSION_ROOT": str(root),
           "QW_SESSION_GRACE_S": "0", "QW_SESSION_SWEEP_S": "0"}  # folders of closed sessions go at the next run
    with streamlit_server(env) as server:
        yield server, root


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.fail("chromium is not installed: apt-get install -y chromium (done by .ci/run)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield chromium
        chromium.close()


def new_session(browser, url: str):
    """A fresh browser context: a new Streamlit session with its own cookies."""
    context = browser.new_context(viewport={"width": 1400, "height": 1200}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(300_000)
    page.goto(url)
    page.wait_for_selector("text=What we understood:")
    page.wait_for_selector(IDLE)
    return context, page


def upload(page, model: Path, images: list[Path], labels: Path | None = None) -> None:
    """Uses the Upload form's real file inputs, then waits for the app to settle."""
    stage_files(page, model, images, labels)
    page.get_by_role("button", name="Use these files").click()
    page.wait_for_timeout(300)
    page.wait_for_selector(IDLE)


def images_zip(image_dir: Path, path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for png in sorted(image_dir.rglob("*.png")):
            zf.write(png, png.relative_to(image_dir.parent))
    return path


# The in-process test (test_hostile.py) gives every corpus entry to the app. Through a real browser and server go the
# entries whose bytes matter on the way: the 60 MB payloads, the archives that try to escape their folder, the models
# that run code when loaded (in a worker), and one broken file of each kind per uploader (about 6 s each).
THROUGH_THE_BROWSER = {"lambda.keras", "garbage.keras", "truncated.tflite", "slip.zip", "absolute.zip", "link.zip",
                       "bomb.zip", "reader.zip", "bomb.png", "text.png", "slip_images.zip", "bomb_images.zip"}


def test_hostile_uploads_through_the_browser_get_one_error_and_the_server_stays_healthy(
        live, browser, model_files, image_dir, tmp_path):
    server, root = live
    before = _repo_state()
    good_images = sorted(image_dir.rglob("*.png"))[:6]
    folder = tmp_path / "hostile"
    folder.mkdir()
    entries = [entry for entry in corpus(tmp_path, model_files["tflite"].read_bytes())
               if entry[0] in THROUGH_THE_BROWSER]
    assert {entry[0] for entry in entries} == THROUGH_THE_BROWSER  # a renamed entry is not silently skipped
    tried = 0
    for name, data, kind, expected in entries:
        path = folder / name
        path.write_bytes(data)
        context, page = new_session(browser, server.url)
        try:
            upload(page, path if kind == "model" else model_files["keras"], good_images if kind == "model" else [path])
            errors = page.locator(ERROR).all_inner_texts()
            assert len(errors) == 1 and expected in errors[0] and "\n" not in errors[0].strip(), (name, errors)
            assert page.locator(EXCEPTION).count() == 0, name
            assert "Traceback" not in page.inner_text("body"), name
        finally:
            context.close()
        assert health_seconds(server.url) <= 1.0, name
        assert server.process.poll() is None, name
        tried += 1
    assert tried == len(THROUGH_THE_BROWSER)
    # a good upload still works, nothing escaped the session folders, nothing landed in the repository
    context, page = new_session(browser, server.url)
    upload(page, model_files["keras"], good_images)
    page.wait_for_selector("text=What we understood: tiny")
    context.close()
    assert not Path("/tmp/evil.txt").exists() and not Path("/evil.txt").exists()
    assert not list(Path(tempfile.gettempdir()).glob("evil*"))
    assert not list(root.rglob("evil*"))  # refused archives were never unpacked
    assert _repo_state() == before


def test_one_session_cannot_see_list_or_download_anothers_files(live, browser, model_files, image_dir, labels_file,
                                                               tmp_path):
    server, root = live
    secret = tmp_path / "alice_private_model.keras"
    secret.write_bytes(model_files["keras"].read_bytes())
    archive = images_zip(image_dir, tmp_path / "alice_private_images.zip")
    alice, alice_page = new_session(browser, server.url)
    upload(alice_page, secret, [archive], labels_file)
    alice_page.wait_for_selector("text=What we understood: alice_private_model")
    alice_page.get_by_role("button", name="Run the full comparison").click()
    alice_page.wait_for_selector(DONE)
    assert "ok" in str(alice_page.evaluate(SUMMARY_JS))
    folders = [p for p in root.iterdir() if any(p.rglob("alice_private_model.keras"))]
    assert len(folders) == 1 and oct(root.stat().st_mode & 0o777) == "0o700"
    alice_session = folders[0].name.split(".", 1)[0]

    # Bob, in another session, uploads the same bytes under his own names: shared work, none of Alice's names.
    bob_model = tmp_path / "bob_model.keras"
    bob_model.write_bytes(secret.read_bytes())
    bob, page = new_session(browser, server.url)
    seen = []
    for title in ("Model & data", "Quantize", "Compare", "Layers", "Ops", "Full dataset", "Report & share"):
        page.locator('[data-testid="stSidebarNavLink"]', has_text=title).click()
        page.wait_for_selector(f'h1:has-text("{title}")')
        page.wait_for_selector(IDLE)
        seen.append(page.inner_text("body"))
    assert "No comparison yet" in seen[2]  # Bob has no results until he runs his own
    page.locator('[data-testid="stSidebarNavLink"]', has_text="Model & data").click()
    page.wait_for_selector(IDLE)
    upload(page, bob_model, [images_zip(image_dir, tmp_path / "bob_images.zip")], labels_file)
    page.get_by_role("button", name="Run the full comparison").click()
    page.wait_for_selector(DONE)
    seen.append(page.inner_text("body"))
    page.locator('[data-testid="stSidebarNavLink"]', has_text="Report & share").click()
    page.wait_for_selector(IDLE)
    downloads = []
    for label in ("HTML report", "All models + recipes (.zip)", "Numbers (JSON)", "Numbers (CSV)"):
        with page.expect_download() as download:
            page.get_by_role("button", name=label).first.click()
        target = tmp_path / f"bob-{len(downloads)}"
        download.value.save_as(target)
        downloads.append(target)
    texts = seen + [_readable(p) for p in downloads]
    assert not [t for t in texts if "alice_private" in t]  # ("aliceblue" is a Plotly colour name)

    # No URL lists or serves another session's files: uploads are write-only, folders are not served.
    base = server.url
    probes = [f"{base}/_stcore/upload_file/{alice_session}/anything", f"{base}/media/", f"{base}/app/static/",
              f"{base}/{folders[0]}/alice_private_model.keras", f"{base}/..%2f..%2f{folders[0]}",
              f"{base}/app/static/..%2f..%2f..%2f{folders[0]}/alice_private_model.keras"]
    for url in probes:
        status, body = _get(url)
        assert status != 200 or (b"alice_private" not in body and secret.read_bytes()[:64] not in body), (url, status)

    # Alice leaves: her folder is removed at the next script run of anyone; Bob's stays.
    bob_folders = [p for p in root.iterdir() if any(p.rglob("bob_model.keras"))]
    alice.close()
    deadline = time.time() + 60
    while folders[0].exists() and time.time() < deadline:
        page.locator('[data-testid="stSidebarNavLink"]', has_text="Compare").click()  # any rerun sweeps
        page.wait_for_selector(IDLE)
        page.wait_for_timeout(1000)
    assert not folders[0].exists() and all(f.exists() for f in bob_folders) and bob_folders
    bob.close()
    assert health_seconds(server.url) <= 1.0


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def _readable(path: Path) -> str:
    """A download's text, or every member's text for a zip (names included)."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            return "\n".join(zf.namelist()) + "\n".join(zf.read(n).decode("latin-1") for n in zf.namelist())
    return path.read_bytes().decode("latin-1")


def _links(page) -> list[str]:
    """The share link and the private delete link shown after Publish (none before)."""
    return [c.strip() for c in page.locator('[data-testid="stCode"]').all_inner_texts() if "view=" in c]


def _publish(page, *, anonymise: bool) -> tuple[str, str]:
    page.locator('[data-testid="stSidebarNavLink"]', has_text="Report & share").click()
    page.wait_for_selector('h1:has-text("Report & share")')
    page.wait_for_selector(IDLE)
    if anonymise:
        page.locator('[data-testid="stCheckbox"]', has_text="Hide image file names").locator("label").click()
    before = _links(page)
    page.get_by_role("button", name="Publish").click()
    for _ in range(600):  # until this publish's links replace the previous ones
        shown = _links(page)
        if len(shown) == 2 and shown != before:
            share, delete = sorted(shown, key=lambda link: "delete=" in link)
            return share, delete
        page.wait_for_timeout(100)
    raise AssertionError(f"no new links after Publish: {shown}")


def test_published_links_show_only_what_was_published_and_deleted_ones_are_gone(
        live, browser, model_files, image_dir, labels_file, tmp_path):
    server, _ = live
    secret = tmp_path / "carol_model.keras"
    secret.write_bytes(model_files["keras"].read_bytes())
    carol, page = new_session(browser, server.url)
    upload(page, secret, [images_zip(image_dir, tmp_path / "carol_secret_photos.zip")], labels_file)
    page.get_by_role("button", name="Run the full comparison").click()
    page.wait_for_selector(DONE)
    saved = page.evaluate("() => new URL(location.href).searchParams.get('r')")  # her private reload id
    carols = page.evaluate(SUMMARY_JS)
    assert saved and len(saved) == 22
    share, delete = _publish(page, anonymise=True)
    other_share, other_delete = _publish(page, anonymise=False)

    # Dave opens the link on another machine: the comparison at once, read-only, without Carol's file names.
    dave = browser.new_context(viewport={"width": 1400, "height": 1200})
    view = dave.new_page()
    view.set_default_timeout(120_000)
    view.goto(share)
    view.wait_for_selector(DONE)
    body = view.inner_text("body")
    assert "A published comparison, read-only" in body and "image_001.png" in body
    assert "carol_secret_photos" not in body and "colours/" not in body
    assert "What if" not in body and "Publish" not in body and view.locator(EXCEPTION).count() == 0
    view.wait_for_selector('[data-testid="stTable"] table')
    assert view.evaluate(SUMMARY_JS) == carols  # the same numbers Carol saw
    for title in ("Ops", "Report & share"):  # the whole read-only view, still on the published comparison
        view.locator('[data-testid="stSidebarNavLink"]', has_text=title).click()
        view.wait_for_selector(f'h1:has-text("{title}")')
        view.wait_for_selector(IDLE)
        assert "A published comparison, read-only" in view.inner_text("body")
    assert view.get_by_role("button", name="Delete it now").count() == 0

    # Nothing unpublished is reachable: Carol's private session id is no share link, nor is a made-up id.
    for link in (f"{server.url}/?view={saved}", f"{server.url}/?view={'A' * 22}", f"{server.url}/?view=../../x"):
        view.goto(link)
        view.wait_for_selector(IDLE)
        errors = view.locator(ERROR).all_inner_texts()
        assert len(errors) == 1 and "no such publication" in errors[0], (link, errors)

    # Another publication's delete token does not delete this one; the right one does.
    wrong = delete.split("&delete=")[0] + "&delete=" + other_delete.split("&delete=")[1]
    view.goto(wrong)
    _delete_form_drawn(view)
    view.get_by_role("button", name="Delete it now").click()
    view.wait_for_selector("text=this delete link does not match it")
    view.goto(share)
    view.wait_for_selector(DONE)
    view.goto(delete)
    _delete_form_drawn(view)
    view.get_by_role("button", name="Delete it now").click()
    view.wait_for_selector("text=Deleted.")
    view.goto(share)
    view.wait_for_selector(ERROR)
    assert "no such publication" in view.locator(ERROR).all_inner_texts()[0]
    view.goto(other_share)  # Carol's other publication is untouched
    view.wait_for_selector(DONE)
    dave.close()
    carol.close()


def _delete_form_drawn(page) -> None:
    """The owner's link has drawn its whole page, the delete form last (right after a navigation the app can
    look idle before its first run starts: a click then may land in a run that is replaced)."""
    page.wait_for_selector("text=Delete this publication")
    page.wait_for_selector(IDLE)
