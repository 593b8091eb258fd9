"""Headless Debian Chromium, driven by Playwright, to check what a person sees in the Dagster web UI.

Playwright drives the machine's own Chromium (Debian package ``chromium``); it
never downloads a browser. Every browser starts with a fresh profile and the
flags that keep it off the network. Helpers find metadata entries on an asset
page, tell whether their pictures decoded (a broken image has ``naturalWidth``
0), open the ``[Show Markdown]`` dialog of entries too long to show inline, and
save screenshots as test artifacts.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from playwright.sync_api import Locator, Page, sync_playwright

# the real binary: /usr/bin/chromium is a wrapper script that Playwright cannot drive
CHROMIUM = Path(os.environ.get("DANQING_TEST_CHROMIUM", "/usr/lib/chromium/chromium"))
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
         "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(os.environ.get("DANQING_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "data" / "test-artifacts"))

# entry rows (key and value; not the one-cell "No metadata entries" shown while loading) of the asset
# page's metadata table, not of the tables markdown values may hold
_METADATA_TABLE = "//table[not(ancestor::table)][tbody/tr[count(td) >= 2]]"
_METADATA_ROWS = "//table[not(ancestor::table)]/tbody/tr[count(td) >= 2]"
# an <img> inside ``root`` with what the browser made of it
_IMAGE_STATES = """root => Array.from(root.querySelectorAll('img')).map(img => ({
    alt: img.alt, complete: img.complete, width: img.naturalWidth, height: img.naturalHeight,
    src: img.currentSrc}))"""


@dataclass(frozen=True)
class ImageState:
    alt: str
    complete: bool
    width: int
    height: int
    src: str = field(repr=False)  # a data URI can be long

    @property
    def rendered(self) -> bool:
        return self.complete and self.width > 0 and self.height > 0


class HeadlessChromium:
    """``with HeadlessChromium() as browser: page = browser.page``; the profile is removed afterwards."""

    def __init__(self, viewport: tuple[int, int] = (1600, 1200)) -> None:
        if not CHROMIUM.is_file():
            raise RuntimeError(f"no Chromium at {CHROMIUM}: install Debian's chromium package (apt-get install chromium)")
        self.viewport = viewport
        self._profile = Path(tempfile.mkdtemp(prefix="danqing-chromium-profile-"))
        self._playwright = None
        self._context = None
        self.page: Page | None = None

    def __enter__(self) -> HeadlessChromium:
        self._playwright = sync_playwright().start()
        try:
            self._context = self._playwright.chromium.launch_persistent_context(
                str(self._profile), executable_path=str(CHROMIUM), headless=True, args=FLAGS,
                viewport={"width": self.viewport[0], "height": self.viewport[1]})
            self.page = self._context.new_page()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self._context is not None:
                self._context.close()
        finally:
            if self._playwright is not None:
                self._playwright.stop()
            shutil.rmtree(self._profile, ignore_errors=True)


def open_asset_page(page: Page, base_url: str, asset: str, partition: str | None = None, timeout_s: float = 90) -> None:
    """The asset's page once its metadata table has loaded: the overview (the latest materialisation,
    whichever partition it was), or with ``partition`` the Partitions tab showing that partition."""
    url = f"{base_url}/assets/{quote(asset)}"
    if partition:  # the overview ignores ?partition=; only the Partitions tab shows one partition's metadata
        url += f"?view=partitions&partition={quote(partition)}"
    page.goto(url, timeout=timeout_s * 1000)
    page.locator(f"xpath={_METADATA_ROWS}").first.wait_for(timeout=timeout_s * 1000)


def metadata_table(page: Page) -> Locator:
    return page.locator(f"xpath={_METADATA_TABLE}").first


def metadata_value(page: Page, key: str) -> Locator:
    """The value cell of a metadata entry.

    Rows of the metadata table (not of tables inside markdown values) whose first cell is the key; the
    value is the row's last cell with content: the overview's rows are key | timestamp | value, the
    Partitions tab's key | value | (empty).
    """
    return page.locator(f"xpath={_METADATA_ROWS}[td[1][normalize-space(.)='{key}']]"
                        "/td[position() > 1][normalize-space(.) != '' or .//img][last()]").first


def image_states(root: Locator, timeout_s: float = 30) -> list[ImageState]:
    """Every picture under ``root`` once the browser has finished with it (loaded or failed)."""
    root.page.wait_for_function(
        "root => Array.from(root.querySelectorAll('img')).every(img => img.complete)", arg=root.element_handle(),
        timeout=timeout_s * 1000)
    return [ImageState(**s) for s in root.evaluate(_IMAGE_STATES)]


def show_markdown(page: Page, key: str, timeout_s: float = 30) -> Locator:
    """Open the ``[Show Markdown]`` dialog of a long markdown entry; returns the dialog."""
    metadata_value(page, key).get_by_text(re.compile(r"Show Markdown")).click()
    dialog = page.get_by_role("dialog").last
    dialog.wait_for(timeout=timeout_s * 1000)
    return dialog


def close_dialog(page: Page) -> None:
    page.keyboard.press("Escape")
    page.get_by_role("dialog").last.wait_for(state="detached", timeout=15_000)


def save_screenshot(target: Page | Locator, name: str) -> Path:
    """A PNG under the test-artifacts folder (``DANQING_TEST_ARTIFACTS``, default data/test-artifacts)."""
    path = ARTIFACTS / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(target, Locator):
        target.scroll_into_view_if_needed()
        target.screenshot(path=str(path))
    else:
        target.screenshot(path=str(path), full_page=True)
    return path
