"""The page of `alexnet serve` in a real headless browser (Debian's chromium + chromedriver).

Uploads a real photo, then checks against the JSON API: the top-5 names on the page equal the
API's, every neighbour thumbnail and the conv1 pictures loaded, nothing overflows a 390 px
phone-width window. Screenshots go to the test's directory (and to $ALEXNET_SERVE_SCREENSHOTS
when set). Skips when chromium or chromedriver is missing (`make` installs them as root).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from test_serve import Server, make_world

httpx = pytest.importorskip("httpx")
webdriver = pytest.importorskip("selenium.webdriver")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars"]  # fmt: skip


def browser(profile: Path, width: int = 1200, height: int = 1400):
    """Headless chromium with a fresh profile; no driver download, no telemetry."""
    os.environ.setdefault("SE_AVOID_STATS", "true")
    os.environ.setdefault("SE_OFFLINE", "true")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"]:
        opts.add_argument(flag)
    return webdriver.Chrome(options=opts, service=webdriver.ChromeService(DRIVER))


def wait_for(driver, script: str, timeout: float = 60.0):
    """Poll a JavaScript expression until it is truthy (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script("return " + script)
        if value:
            return value
        time.sleep(0.1)
    status = driver.execute_script("return document.getElementById('status').textContent")
    raise AssertionError(f"timed out waiting for {script!r} (page status: {status!r})")


def screenshot(driver, path: Path, width: int) -> None:
    """The whole page at `width` px (the window grows to the page's height)."""
    driver.set_window_size(width, 800)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, int(height) + 160)
    time.sleep(0.3)
    driver.save_screenshot(str(path))


def upload_and_check(driver, url: str, image: Path) -> dict:
    """Open the page, upload `image`, wait for every picture; returns what the page shows."""
    driver.get(url)
    wait_for(driver, "document.getElementById('kernels').naturalWidth > 0")
    driver.find_element("id", "file").send_keys(str(image))
    wait_for(driver, "document.body.dataset.done === '1'")
    names = driver.execute_script(
        "return [...document.querySelectorAll('#top5 .name')].map(e => e.textContent)"
    )
    thumbs = driver.execute_script(
        "return [...document.querySelectorAll('#neighbors img')]"
        ".map(e => e.complete ? e.naturalWidth : 0)"
    )
    maps = driver.execute_script("return document.getElementById('maps').naturalWidth")
    occlusion = driver.execute_script("return window.occlusion")
    shown = driver.execute_script("return !document.getElementById('occlusion').hidden")
    units = driver.execute_script("return window.units")
    return {
        "names": names,
        "thumbs": thumbs,
        "maps": maps,
        "occlusion": occlusion,
        "units": units,
        "shown": shown,
    }


def page_screenshots(url: str, image: Path, out: Path, profile: Path) -> list[dict]:
    """Upload `image` on a desktop (1200 px) and a phone-width (390 px) window; what each
    page showed, and their screenshots serve.png and serve-phone.png in `out`."""
    driver = browser(profile)
    seen = []
    try:
        for width, name in ((1200, "serve.png"), (390, "serve-phone.png")):
            driver.set_window_size(width, 1200)
            seen.append(upload_and_check(driver, url, image))
            screenshot(driver, out / name, width)
            seen[-1]["overflow"] = driver.execute_script(
                "return document.documentElement.scrollWidth - window.innerWidth"
            )
    finally:
        driver.quit()
    return seen


@pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs chromium and chromedriver")
def test_page_in_headless_chromium(tmp_path):
    world = make_world(tmp_path / "world")
    photo = world["chelsea.png"]
    with Server(tmp_path / "server.log", "--weights", str(world["weights"]), "--index",
                str(world["feats"])) as s:  # fmt: skip
        seen = page_screenshots(s.url, photo, tmp_path, tmp_path / "profile")
        with httpx.Client(base_url=s.url, timeout=30, trust_env=False) as c:
            api = c.post("/v1/predict?topk=5", content=photo.read_bytes(),
                         headers={"Content-Type": "image/png"}).json()  # fmt: skip
            occ = c.post("/v1/occlusion", content=photo.read_bytes(),
                         headers={"Content-Type": "image/png"}).json()  # fmt: skip
            units = c.post("/v1/units?layer=conv3&k=8", content=photo.read_bytes(),
                           headers={"Content-Type": "image/png"}).json()  # fmt: skip
        assert s.stop() == 0
    for page in seen:  # desktop, then phone width
        assert page["names"] == [t["class"] for t in api["predictions"][0]["top"]]
        assert len(page["thumbs"]) == 8 and all(w == 32 for w in page["thumbs"])  # packed 32 px
        assert page["maps"] > 0
        assert (
            page["shown"] and page["occlusion"]["class"] == api["predictions"][0]["top"][0]["class"]
        )
        np.testing.assert_allclose(page["occlusion"]["drop"], occ["drop"], atol=1e-6)
        assert page["units"]["layer"] == "conv3"  # the last conv layer is the page's default
        got, want = page["units"]["units"], units["units"]
        assert [(u["unit"], u["box"]) for u in got] == [(u["unit"], u["box"]) for u in want]
        assert page["overflow"] <= 0  # no sideways scrolling
    for name in ("serve.png", "serve-phone.png"):
        assert (tmp_path / name).stat().st_size > 10_000
    if os.environ.get("ALEXNET_SERVE_SCREENSHOTS"):
        dest = Path(os.environ["ALEXNET_SERVE_SCREENSHOTS"])
        for name in ("serve.png", "serve-phone.png"):
            shutil.copy(tmp_path / name, dest / name)
