"""plugtalk ui: the request runner and the page in a real headless Chromium.

The browser test uses Debian's ``chromium`` + ``chromium-driver`` packages (``.ci/run`` installs them); it is
skipped, saying why, only where they are absent.  ``PLUGTALK_UI_SCREENSHOT_DIR``: keep the screenshots there.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from plugtalk.errors import CheckpointError, InputError, NoFaceError


# -- the request runner (no browser) ------------------------------------------------------------------------
gr = pytest.importorskip("gradio", reason="needs plugtalk[ui] (gradio)")

from plugtalk.ui.app import ModelCache, UIConfig, build_app, demo_pair, launch, run_request  # noqa: E402


@pytest.fixture(scope="module")
def ui_cfg(tmp_path_factory):
    return UIConfig(workdir=tmp_path_factory.mktemp("ui"), max_upload_mb=5, max_frames=40)


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    from PIL import Image

    d = tmp_path_factory.mktemp("bad")
    Image.fromarray(np.full((128, 128, 3), 128, np.uint8)).save(d / "gray.png")
    (d / "corrupt.mp4").write_bytes(b"this is not a video" * 100)
    (d / "big.mp4").write_bytes(b"\0" * (6 * 2**20))
    (d / "weights.safetensors").write_bytes(b"not weights")
    return d


def test_run_request_errors_carry_the_cli_messages(ui_cfg, bad_inputs):
    cache = ModelCache()
    src, drv = demo_pair(ui_cfg.workdir)
    with pytest.raises(NoFaceError, match="no face"):
        run_request(ui_cfg, cache, source=bad_inputs / "gray.png", driving=drv, frames=2)
    with pytest.raises(InputError, match="corrupt.mp4"):
        run_request(ui_cfg, cache, source=src, driving=bad_inputs / "corrupt.mp4", frames=2)
    with pytest.raises(InputError, match="over the 5 MB upload limit"):
        run_request(ui_cfg, cache, source=src, driving=bad_inputs / "big.mp4", frames=2)
    with pytest.raises(CheckpointError, match="does not exist"):
        run_request(ui_cfg, cache, source=src, driving=drv, checkpoint="/nonexistent/model.safetensors", frames=2)
    with pytest.raises(CheckpointError):
        run_request(ui_cfg, cache, source=src, driving=drv, checkpoint=str(bad_inputs / "weights.safetensors"), frames=2)
    with pytest.raises(InputError, match="upload a source portrait"):
        run_request(ui_cfg, cache, source=None, driving=drv)
    with pytest.raises(InputError, match="frames must be between 1 and 40"):
        run_request(ui_cfg, cache, source=src, driving=drv, frames=41)


def test_build_app_wires_the_page(ui_cfg):
    app = build_app(ui_cfg)
    ids = {getattr(b, "elem_id", None) for b in app.blocks.values()}
    assert {"source", "driving", "demo", "run", "status", "result", "side-by-side", "emi-edi-off",
            "emi-edi-on"} <= ids


def test_non_loopback_host_warns(ui_cfg, monkeypatch):
    seen = []
    monkeypatch.setattr("plugtalk.ui.app.build_app", lambda cfg: (_ for _ in ()).throw(RuntimeError("stop")))
    with pytest.raises(RuntimeError, match="stop"):
        launch("0.0.0.0", 0, ui_cfg, block=False, on_warning=seen.append)
    assert seen and "0.0.0.0" in seen[0] and "no authentication" in seen[0]
    seen.clear()
    with pytest.raises(RuntimeError):
        launch("127.0.0.1", 0, ui_cfg, block=False, on_warning=seen.append)
    assert not seen


# -- the page in a real browser -------------------------------------------------------------------------------
def _chromium() -> tuple[str, str] | None:
    browser = os.environ.get("PLUGTALK_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    driver = os.environ.get("PLUGTALK_CHROMEDRIVER") or shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs plugtalk[ui] (selenium)")
    found = _chromium()
    if found is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium chromium-driver; .ci/run does this)")
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager download a browser or driver

    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,2000", "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(found[1]))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def server(ui_cfg):
    app, url = launch("127.0.0.1", _free_port(), ui_cfg, block=False)
    yield url
    app.close()


def _upload(driver, elem_id: str, path: Path, by) -> None:
    driver.find_element(by.CSS_SELECTOR, f"#{elem_id} input[type=file]").send_keys(str(path))


def _wait(fn, timeout: float, what: str, driver=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = fn()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _status(driver, by) -> str:
    return driver.find_element(by.ID, "status").text


def _reload(driver, url, by):
    driver.get(url)
    _wait(lambda: driver.find_elements(by.CSS_SELECTOR, "#source input[type=file]"), 30, "the page", driver)


def _set_frames(driver, n: int, by) -> None:
    from selenium.webdriver.common.keys import Keys

    box = driver.find_element(by.CSS_SELECTOR, "#frames input[type=number]")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(str(n), Keys.TAB)


def test_page_in_headless_chromium_animates_the_demo_pair_and_shows_errors(browser, server, ui_cfg, bad_inputs,
                                                                           tmp_path):
    from selenium.webdriver.common.by import By

    shots = Path(os.environ.get("PLUGTALK_UI_SCREENSHOT_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    src, drv = demo_pair(tmp_path)  # files to upload, as a user would

    # an error case: a portrait without a face -> the CLI's message in the page, the server keeps going
    _reload(browser, server, By)
    _upload(browser, "source", bad_inputs / "gray.png", By)
    _upload(browser, "driving", drv, By)
    _set_frames(browser, 4, By)
    time.sleep(1.0)  # let the uploads finish
    browser.find_element(By.ID, "run").click()
    text = _wait(lambda: "error" in _status(browser, By) and _status(browser, By), 60, "the error message")
    assert "no face" in text, text
    browser.save_screenshot(str(shots / "ui-error.png"))

    # the demo pair, uploaded -> the result video loads and has a duration
    _reload(browser, server, By)
    _upload(browser, "source", src, By)
    _upload(browser, "driving", drv, By)
    _set_frames(browser, 4, By)
    time.sleep(1.0)
    browser.find_element(By.ID, "run").click()
    duration = _wait(lambda: browser.execute_script(
        "const v = document.querySelector('#result video');"
        "return v && v.readyState >= 1 && isFinite(v.duration) ? v.duration : 0;"), 90, "the result video")
    assert duration > 0
    assert "model:" in _status(browser, By) and "error" not in _status(browser, By)
    # the plain default model beside the shipped +EMI+EDI comparison model, both with an identity shift
    assert browser.execute_script("return !!document.querySelector('#emi-edi-off video')")
    assert "identity shift" in _status(browser, By)
    assert "plugtalk-small-compare" in _status(browser, By)  # the "on" side is the shipped comparison model
    browser.execute_script("document.querySelector('#result').scrollIntoView()")
    browser.save_screenshot(str(shots / "ui-result.png"))
    assert (shots / "ui-result.png").stat().st_size > 0


def test_rejected_requests_are_one_log_line_each(tmp_path):
    """Path traversal (403), an upload over --max-upload-mb (413) and a request for an event the page does not
    have (uvicorn's 500 'Exception in ASGI application') leave the server running and log no traceback."""
    import subprocess
    import sys
    import urllib.error
    import urllib.request

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "plugtalk", "ui", "--port", str(port), "--workdir", str(tmp_path),
                             "--max-upload-mb", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def status(path: str, data: bytes | None = None, content_type: str = "application/json") -> int:
        req = urllib.request.Request(url + path, data=data, headers={"Content-Type": content_type} if data else {})
        try:
            return urllib.request.urlopen(req, timeout=20).status
        except urllib.error.HTTPError as e:
            return e.code

    try:
        _wait(lambda: _up(url), 120, "the server")
        bnd = "plugtalkboundary"
        upload = (f'--{bnd}\r\nContent-Disposition: form-data; name="files"; filename="big.png"\r\n'
                  "Content-Type: image/png\r\n\r\n").encode() + b"\0" * (2 << 20) + f"\r\n--{bnd}--\r\n".encode()
        codes = [status("/gradio_api/file=/etc/passwd"),
                 status("/gradio_api/upload", upload, f"multipart/form-data; boundary={bnd}"),
                 *(status("/gradio_api/queue/join", b'{"fn_index": 999, "data": [], "session_hash": "x"}')
                   for _ in range(2))]
        assert codes == [403, 413, 500, 500], codes
        assert status("/") == 200  # still serving
    finally:
        proc.terminate()
        log = proc.communicate(timeout=30)[0]
    assert "Traceback" not in log, log[-3000:]
    assert log.count("rejected request: KeyError: 999") == 2, log[-3000:]


def _up(url: str) -> bool:
    import urllib.request

    try:
        return urllib.request.urlopen(url, timeout=2).status == 200
    except OSError:
        return False
