"""The README's JavaScript example, rendered as a Django template, works as pasted."""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import ROOT
from tests.browser.helpers import bands, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("### The JavaScript client", 1)[1]
    return re.search(r"```html\n(.*?)```", section, re.DOTALL).group(1)


async def test_readme_example(site_url, page, screenshot):
    from asgiref.sync import sync_to_async
    from django.template import engines

    html = await sync_to_async(engines["django"].from_string(readme_example()).render)({})
    await page.goto(f"{site_url}/rtc/")  # same origin as the app, as in a project's template
    await page.set_content(html)
    await page.click("#start")
    await page.wait_for_function(
        "() => document.querySelector('#state').textContent === 'connected'"
    )
    await wait_for(
        lambda: bands(page, "#them"),
        lambda b: b["bottom"] > 180 and b["top"] < 60,
        "flipped frames in the example's <video>",
    )
    await page.click("#start")
    await page.wait_for_function("() => document.querySelector('#state').textContent === 'closed'")
    assert await page.text_content("#error") == ""
    await screenshot(page, "closed")
