"""The browser demo (examples/browser-search) served from a local folder and driven by headless
Chromium: what the browser test and benchmarks/web.py share."""

from __future__ import annotations

import contextlib
import functools
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.support.nodejs import JS

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "browser-search"
CHROMIUM = Path("/usr/bin/chromium")
LOG: list[str] = []  # the requests served, for a failing test to show
DRIVER = Path("/usr/bin/chromedriver")


def site(export: Path, dest: Path) -> Path:
    """The demo as a static site in ``dest``: the page, its sentences, transformers.js's browser
    bundle and ONNX Runtime's WASM files (from tests/js/node_modules), and the export's web/."""
    dist = JS / "node_modules" / "@huggingface" / "transformers" / "dist"
    ort_dist = dist.parent / "node_modules" / "onnxruntime-web" / "dist"
    if not ort_dist.is_dir():  # npm put it at the top level
        ort_dist = JS / "node_modules" / "onnxruntime-web" / "dist"
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("index.html", "search.js", "sentences.json"):
        shutil.copy2(DEMO / name, dest / name)
    vendor = dest / "vendor"
    vendor.mkdir(exist_ok=True)
    shutil.copy2(dist / "transformers.min.js", vendor)
    # ONNX Runtime's WASM builds (transformers.js picks one for the browser's features).
    for source in sorted(ort_dist.glob("ort-wasm-simd-threaded*")):
        if source.suffix in (".mjs", ".wasm"):
            shutil.copy2(source, vendor / source.name)
    shutil.copytree(export / "web", dest / "model" / "web", dirs_exist_ok=True)
    return dest


class _Quiet(http.server.SimpleHTTPRequestHandler):
    extensions_map: ClassVar[dict[str, str]] = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript",
        ".mjs": "text/javascript",
        ".wasm": "application/wasm",
        ".json": "application/json",
    }

    def log_message(self, format: str, *args: Any) -> None:
        LOG.append(format % args)


@contextlib.contextmanager
def served(folder: Path) -> Iterator[str]:
    """A local HTTP server of ``folder`` on a free port; yields its URL."""
    handler = functools.partial(_Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """Headless Chromium under selenium; skips, saying so, where either is not installed."""
    if not (CHROMIUM.is_file() and DRIVER.is_file()):
        pytest.skip("chromium and chromium-driver are not installed (apt-get install them)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (the dev extra)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.add_argument("--window-size=1000,900")
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def run_query(driver: Any, url: str, query: str, timeout: float = 180) -> dict[str, Any]:
    """Open the demo, wait for its corpus, search ``query``; returns what the page computed."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url + "/index.html")
    wait = WebDriverWait(driver, timeout)
    wait.until(lambda d: d.execute_script("return window.gistReady === true || !!window.gistError"))
    error = driver.execute_script("return window.gistError")
    assert not error, f"the page failed: {error}"
    box = driver.find_element(By.ID, "query")
    box.clear()
    box.send_keys(query)
    driver.find_element(By.ID, "search").click()
    wait.until(
        lambda d: d.execute_script(
            "return window.gistLastQuery && window.gistLastQuery.query === arguments[0]", query
        )
    )
    result: dict[str, Any] = driver.execute_script("return window.gistLastQuery")
    result["corpus"] = driver.execute_script("return window.gistCorpus")
    return result
