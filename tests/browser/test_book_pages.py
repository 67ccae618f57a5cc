"""The built book, checked in a real browser (headless Chromium via Playwright), with no network.

Run after ``jupyter-book build .`` (see conftest.py for how and why this folder is opt-in). Every page of
_build/html is opened once from a local http.server with every request that is not to localhost blocked
(CDNs, Google fonts, ...; the blocked URLs are listed in the test log), and a full-page screenshot is saved
to _build/screenshots/<page>.png. Then, per page:

- test_page_loads_cleanly: no same-origin response >= 400, no failed localhost request, no uncaught
  exception and no console error outside browser_book.CONSOLE_ALLOW;
- test_nothing_is_wider_than_its_column: at 1280 px no code block, output, table or picture scrolls or
  runs off the right of the article column (_static/layout.css);
- test_no_page_shows_a_folder_of_the_machine_that_built_it: not the repository, home, data or cache folder;
- test_images_decode: every <img> decodes to a non-zero size (lazy ones are made eager first);
- test_math_renders: on pages with math, MathJax has typeset every $...$ / $$...$$ (each span.math /
  div.math holds an mjx-container) without TeX errors, i.e. MathJax came from the book, not a CDN;
- test_animations_step: every no-kernel animation (matplotlib to_jshtml, vnca_tutorial's frames_to_html)
  decodes every frame, shows an icon or text on every button, and a click on its step-forward button
  advances it (slider and frame's src);
- test_widgets_render: every embedded ipywidget view (widget-view+json) is rendered by the widget manager
  into a non-empty widget area, with the manager's JavaScript served by the book.

and per chapter of _toc.yml:

- test_toc_chapters_are_built: the chapter has a page;
- test_launch_buttons: a notebook chapter's page links to Colab and Binder, both at its .ipynb, which
  exists (the references page is not a notebook);
- test_sidebar_reaches_every_chapter: its sidebar navigation links to every chapter of _toc.yml.
"""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urljoin

import pytest

import browser_book as bb

if not bb.html_dir().is_dir():
    pytest.skip(f"the book is not built ({bb.html_dir()} does not exist): these tests check the built HTML; "
                "run `jupyter-book build . -W --keep-going` first", allow_module_level=True)

PAGES = bb.built_pages()
CHAPTERS = bb.toc_chapters()
NOTEBOOKS = bb.toc_notebooks()   # the chapters with launch buttons (not the references page)


def _chapter_page(docname: str) -> str:
    page = f"{docname}.html"
    if not (bb.html_dir() / page).is_file():
        pytest.fail(f"{docname} is in _toc.yml but {page} is not in {bb.html_dir()}: rebuild the book")
    return page


def _where(report: bb.PageReport) -> str:
    return f"{report.page} (screenshot: {report.screenshot or 'none'})"


def test_toc_chapters_are_built():
    missing = [c for c in CHAPTERS if not (bb.html_dir() / f"{c}.html").is_file()]
    assert not missing, f"chapters of _toc.yml with no page in {bb.html_dir()}: {missing}; rebuild the book"


@pytest.mark.parametrize("page", PAGES)
def test_page_loads_cleanly(visit, page):
    r = visit(page)
    assert not r.errors, f"{_where(r)}: {r.errors}"
    assert not r.bad_responses, f"{_where(r)}: missing resources (status >= 400): {r.bad_responses}"
    assert not r.failed_requests, f"{_where(r)}: failed localhost requests: {r.failed_requests}"
    assert not r.page_errors, f"{_where(r)}: uncaught JavaScript errors: {r.page_errors}"
    assert not r.console_errors, f"{_where(r)}: console errors: {r.console_errors}"
    assert r.screenshot, f"{page}: no screenshot"


@pytest.mark.parametrize("page", PAGES)
def test_nothing_is_wider_than_its_column(visit, page):
    """At a 1280 px window no code, output, table or picture scrolls or runs off the right of its column
    (_static/layout.css makes the room; lines of code longer than ~110 characters do not fit)."""
    r = visit(page)
    assert not r.errors, f"{_where(r)}: {r.errors}"
    assert not r.overflowing, f"{_where(r)}: wider than their column at 1280 px: {r.overflowing}"


@pytest.mark.parametrize("page", PAGES)
def test_no_page_shows_a_folder_of_the_machine_that_built_it(visit, page):
    """Readers see $VNCA_DATA_DIR, ~ or .. where the build machine had its own folders
    (vnca_tutorial.book.short_paths)."""
    r = visit(page)
    assert not r.errors, f"{_where(r)}: {r.errors}"
    folders = {str(bb.ROOT), str(Path.home()), os.environ.get("VNCA_DATA_DIR", ""),
               os.environ.get("VNCA_CACHE_DIR", "")}
    shown = sorted(f for f in folders if len(f) > 1 and f in r.text)
    assert not shown, f"{_where(r)}: the page shows folders of the machine that built it: {shown}"


@pytest.mark.parametrize("page", PAGES)
def test_images_decode(visit, page):
    r = visit(page)
    assert not r.errors, f"{_where(r)}: {r.errors}"
    broken = [bb._short(i["src"]) for i in r.images if not (i["width"] > 0 and i["height"] > 0)]
    assert not broken, f"{_where(r)}: images that do not decode: {broken}"


@pytest.mark.parametrize("page", PAGES)
def test_math_renders(visit, page):
    r = visit(page)
    assert not r.errors, f"{_where(r)}: {r.errors}"
    m = r.math
    if not m.get("elements"):
        return  # no math on this page
    hint = ""
    if m.get("mathjax_src") and not bb.is_local(m["mathjax_src"]):
        hint = (f" MathJax is loaded from {m['mathjax_src']}, which is not part of the book: run "
                "tools/vendor_js.sh before `jupyter-book build` (see tools/offline_js.py).")
    assert m["mathjax_started"], f"{_where(r)}: {m['elements']} math elements but MathJax never ran.{hint}"
    assert m["rendered"] == m["elements"] and m["containers"] > 0, (
        f"{_where(r)}: MathJax typeset {m['rendered']} of {m['elements']} math elements; "
        f"not typeset: {m['unrendered']}.{hint}")
    assert not m["tex_errors"], f"{_where(r)}: TeX errors: {m['tex_errors']}"


@pytest.mark.parametrize("page", PAGES)
def test_animations_step(visit, page):
    r = visit(page)
    assert not r.errors, f"{_where(r)}: {r.errors}"
    for a in r.animations:
        name = f"{_where(r)}: animation {a['index']} ({a['kind']})"
        assert "error" not in a, f"{name}: {a['error']}"
        assert a["frames"] >= 2, f"{name}: {a['frames']} frame(s), nothing to step through"
        assert not a["bad_frames"], f"{name}: frames that do not decode: {a['bad_frames']}"
        assert not a["blank_buttons"], f"{name}: buttons with no icon or text: {a['blank_buttons']}"
        assert int(a["value_after"]) == int(a["value_before"]) + 1, (
            f"{name}: step forward moved the slider from {a['value_before']} to {a['value_after']}")
        assert a["src_changed"] or a["frames_0_1_identical"], f"{name}: step forward did not change the frame"
        assert a["value_played"] != a["value_after"], f"{name}: Play for 0.7 s did not move the slider"


@pytest.mark.parametrize("page", PAGES)
def test_widgets_render(visit, page):
    r = visit(page)
    assert not r.errors, f"{_where(r)}: {r.errors}"
    views = r.widgets.get("views", [])
    if not views:
        return  # no embedded widget views on this page
    assert r.widgets["state_scripts"], f"{_where(r)}: widget views but no widget state in the page"
    hint = ""
    src = r.widgets.get("manager_src")
    if src and not bb.is_local(src):
        hint = (f" The widget manager is loaded from {src}, which is not part of the book: run "
                "tools/vendor_js.sh before `jupyter-book build` (see tools/offline_js.py).")
    bad = [v for v in views if not (v["rendered"] and v["width"] > 0 and v["height"] > 0)]
    assert not bad, f"{_where(r)}: widget views {r.widgets['wait'] or 'not rendered'}: {bad}.{hint}"


@pytest.mark.parametrize("docname", NOTEBOOKS)
def test_launch_buttons(visit, docname):
    r = visit(_chapter_page(docname))
    assert not r.errors, f"{_where(r)}: {r.errors}"
    assert (bb.ROOT / f"{docname}.ipynb").is_file(), (
        f"{docname}.ipynb, which the launch buttons open, is not in the repository "
        "(tools/sync_notebooks.py makes it)")
    want = bb.expected_launch_links(docname)
    hrefs = [link["href"] for link in r.launch_links]
    assert want["colab"] in hrefs, f"{_where(r)}: no Colab button for {want['colab']}; launch links: {hrefs}"
    binder = [h for h in hrefs if h.startswith(want["binder_prefix"])]
    assert binder, f"{_where(r)}: no Binder button ({want['binder_prefix']}...); launch links: {hrefs}"
    assert all(h.endswith(want["binder_suffix"]) for h in binder), (
        f"{_where(r)}: Binder button does not open {want['binder_suffix']}: {binder}")


@pytest.mark.parametrize("docname", CHAPTERS)
def test_sidebar_reaches_every_chapter(visit, book_url, docname):
    r = visit(_chapter_page(docname))
    assert not r.errors, f"{_where(r)}: {r.errors}"
    links = set(r.sidebar_links)
    missing = [c for c in CHAPTERS if urljoin(book_url, f"{c}.html") not in links]
    assert not missing, f"{_where(r)}: the sidebar does not link to {missing}"
    local = [link for link in links if link.startswith(book_url)]
    dangling = [link for link in local if not (bb.html_dir() / link[len(book_url):]).is_file()]
    assert not dangling, f"{_where(r)}: sidebar links to pages that do not exist: {dangling}"
