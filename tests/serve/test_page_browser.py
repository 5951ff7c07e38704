"""The web page at ``/`` in a real headless Chromium (Debian's ``chromium``, driven by
Playwright): load it, upload a voice, synthesise, and the audio element gets a playable
source. A screenshot is kept in ``$METIS_TEST_ARTIFACTS`` (default ``test-artifacts/``).
Skips, saying why, where Playwright or a Chromium binary is missing."""

import os
import shutil
from pathlib import Path

import pytest

from .conftest import PROMPT, PROMPT_TEXT, REPO

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install playwright)")

CHROMIUM = next((p for p in (os.environ.get("METIS_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                             shutil.which("chromium-browser")) if p and Path(p).is_file()), None)
ARTIFACTS = Path(os.environ.get("METIS_TEST_ARTIFACTS", REPO / "test-artifacts"))


@pytest.fixture
def page(tmp_path):
    if CHROMIUM is None:
        pytest.skip("no Chromium binary (apt-get install chromium, or set METIS_CHROMIUM)")
    with sync_api.sync_playwright() as p:
        try:
            browser = p.chromium.launch_persistent_context(
                str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                      "--disable-sync", "--no-first-run"])
        except Exception as e:  # noqa: BLE001 - a browser that cannot start on this machine
            pytest.skip(f"Chromium at {CHROMIUM} does not start here: {str(e).splitlines()[0]}")
        try:
            yield browser.pages[0] if browser.pages else browser.new_page()
        finally:
            browser.close()


def test_page_uploads_a_voice_and_plays_speech(small_server, page):
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(small_server.url + "/")
    page.wait_for_function("document.querySelectorAll('#voice option').length > 0")
    assert "tts" in page.inner_text("#model")
    # upload a voice
    page.click("#new-voice summary")
    page.set_input_files("#voice-file", str(PROMPT))
    page.fill("#voice-transcript", PROMPT_TEXT)
    page.fill("#voice-name", "browser voice")
    page.click("#save-voice")
    page.wait_for_function("document.getElementById('status').textContent.startsWith('saved voice')", timeout=60_000)
    chosen = page.eval_on_selector("#voice", "s => s.selectedOptions[0].textContent")
    assert chosen.startswith("browser voice")
    # synthesise (streamed sentence by sentence, with progress) and get a playable source
    page.select_option("#task", "tts")
    page.fill("#text", "The page sends this text. Then it plays the answer.")
    page.fill("#steps", "2")
    page.click("#run")
    page.wait_for_function("document.getElementById('status').textContent.startsWith('done')", timeout=120_000)
    src = page.get_attribute("#result", "src")
    assert src and src.startswith("blob:")
    duration = page.evaluate("""() => new Promise((ok, bad) => {
        const a = document.getElementById('result');
        const done = () => ok(a.duration);
        if (a.readyState >= 1) done(); else { a.onloadedmetadata = done; a.onerror = () => bad('unplayable'); a.load(); }
    })""")
    assert 1.0 < duration < 20.0
    assert page.get_attribute("#download", "href") == src
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "serve_page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    # a bad request shows the server's message on the page
    page.fill("#text", "   ")
    page.click("#run")
    page.wait_for_function("document.getElementById('status').className === 'error'", timeout=30_000)
    assert "empty" in page.inner_text("#status")
    assert not errors, errors


def test_page_enhances_a_file_with_the_chosen_output(small_server, page, tmp_path):
    """SE from the page: the "Output" choice shows for SE only and reaches the server as
    ``refine`` (left out for the model's default); the answer plays."""
    import numpy as np
    import soundfile as sf

    if "se" not in small_server.client.get("/health").json()["tasks"]:
        pytest.skip("the shipped small model has no SE")
    wav, sr = sf.read(str(PROMPT), dtype="float32")
    noisy = wav[: int(2.0 * sr)] + 0.05 * np.random.default_rng(0).standard_normal(int(2.0 * sr)).astype(np.float32)
    f = tmp_path / "noisy.wav"
    sf.write(f, noisy, sr)
    # the form fields each request sends (a multipart body with a file is not readable from the request)
    page.add_init_script("""(() => { const real = window.fetch; window.__sent = [];
        window.fetch = (url, opts) => { if (opts && opts.body instanceof FormData) window.__sent.push([url,
            Object.fromEntries([...opts.body.entries()].filter(([k, v]) => typeof v === 'string'))]);
            return real(url, opts); }; })()""")
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(small_server.url + "/")
    page.wait_for_function("document.querySelectorAll('#task option').length > 0")
    assert not page.is_visible("#refine")  # TTS first: no SE output choice
    page.select_option("#task", "se")
    assert page.is_visible("#refine")
    page.set_input_files("#input-file", str(f))
    for choice in ("none", ""):
        page.select_option("#refine", choice)
        page.evaluate("document.getElementById('status').textContent = ''")
        page.click("#run")
        page.wait_for_function("document.getElementById('status').textContent.startsWith('done')", timeout=120_000)
        assert page.get_attribute("#result", "src").startswith("blob:")
    sent = page.evaluate("window.__sent")
    assert [u for u, _ in sent] == ["/v1/audio/enhance"] * 2
    assert sent[0][1].get("refine") == "none" and "refine" not in sent[1][1]
    page.select_option("#task", "tts")
    assert not page.is_visible("#refine")
    assert not errors, errors
