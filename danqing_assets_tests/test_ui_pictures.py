"""The headless-Chromium picture check itself: it tells a broken picture from a good one.

The asset pages are checked in test_backfill_and_ui.py, on the instance its ``dagster dev``
backfill fills (one pipeline run in the suite for both).
"""

from danqing_assets_tests.browser import HeadlessChromium, image_states


def test_the_browser_check_tells_a_broken_picture_from_a_good_one():
    tiny_png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgABSK+kcQAAAABJRU5ErkJggg=="
    with HeadlessChromium() as chrome:
        chrome.page.set_content(f'<div id="x"><img alt="good" src="data:image/png;base64,{tiny_png}">'
                                '<img alt="broken" src="data:image/png;base64,AAAA"></div>')
        states = {s.alt: s for s in image_states(chrome.page.locator("#x"))}
    assert states["good"].rendered and (states["good"].width, states["good"].height) == (1, 1)
    assert states["broken"].complete and not states["broken"].rendered
