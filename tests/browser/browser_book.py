"""What the browser tests share: where the built book is, what _toc.yml and _config.yml say, a static
server for _build/html, and ``visit``: open one page in Chromium with every non-localhost request blocked
and record what the checks in test_book_pages.py need (one visit per page, cached in ``VISITS``).
"""
from __future__ import annotations

import dataclasses
import functools
import http.server
import os
import re
import shutil
import threading
import time
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import yaml

ROOT = Path(__file__).resolve().parents[2]

# Chromium flags that work on the CI machines (closed network, running as root, no GPU). Playwright adds
# --headless itself and gives every launch a fresh, empty profile (--user-data-dir is its own temp dir:
# passing one here is refused by Playwright).
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 900}
TIMEOUT_MS = 90_000  # per wait; the CI machine has two slow, shared cores

# Console errors that are not failures. Keep this list short and say why each entry is harmless.
CONSOLE_ALLOW = [
    # Our own route interception: every non-localhost request is aborted with "blockedbyclient", and
    # Chromium logs one "Failed to load resource: net::ERR_BLOCKED_BY_CLIENT" per aborted request
    # (e.g. the Font Awesome 4 stylesheet matplotlib's to_jshtml links from maxcdn). Those requests are
    # listed in the test log instead; a page that needs them fails the other checks.
    (re.compile(r"^Failed to load resource: net::ERR_BLOCKED_BY_CLIENT(\.Inspector)?$"), "blocked URL only"),
    # pydata-sphinx-theme: a fresh browser profile has no stored light/dark mode, so the theme script
    # logs this (with console.error) and falls back to "auto", which is what a first visit should get.
    (re.compile(r"^Got invalid theme mode: \. Resetting to auto\.$"), "anywhere"),
]

# Uncaught page errors that are not failures (same rule: short, and each one explained).
PAGE_ERROR_ALLOW = [
    # sphinx-thebe 0.3.1 (via Jupyter Book 1.0.4) adds its inline config script, `const THEBE_JS_URL =
    # ...; const thebe_selector = ...`, twice to every page; the second copy throws at its first line.
    # The first copy has already defined the same values, and thebe (live code) is off in _config.yml.
    re.compile(r"^Identifier 'THEBE_JS_URL' has already been declared$"),
]

# The two kinds of animation that need no kernel: matplotlib's Animation.to_jshtml, and the player of
# vnca_tutorial.player.frames_to_html. Each has an <img>, a range slider and first/next buttons.
ANIMATION_KINDS = {
    "matplotlib to_jshtml": {
        "root": "div.animation",
        "first": 'button[title="First frame"]',
        "next": 'button[title="Next frame"]',
        "play": 'button[title="Play"]',
        "pause": 'button[title="Pause"]',
    },
    "vnca_tutorial frames_to_html": {
        "root": 'div[id^="vnca-animation-"]',
        "first": "button.vnca-first",
        "next": "button.vnca-next",
        "play": "button.vnca-play",
        "pause": "button.vnca-play",     # one button: play / pause
    },
}

WIDGET_VIEW = 'script[type="application/vnd.jupyter.widget-view+json"]'
WIDGET_STATE = 'script[type="application/vnd.jupyter.widget-state+json"]'


# --- where things are -----------------------------------------------------------------------------------

def html_dir() -> Path:
    return Path(os.environ.get("VNCA_BOOK_HTML", ROOT / "_build" / "html")).resolve()


def screenshot_dir() -> Path:
    default = html_dir().parent / "screenshots"
    return Path(os.environ.get("VNCA_SCREENSHOTS", default)).resolve()


def chromium_path() -> str:
    path = os.environ.get("VNCA_CHROMIUM") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else shutil.which("chromium"))
    if not path:
        raise RuntimeError("no Chromium: install Debian's chromium (apt-get install -y chromium) or set "
                           "VNCA_CHROMIUM; Playwright's own browser download does not work offline")
    return path


def built_pages() -> list[str]:
    """Every HTML page of the built book, relative to _build/html (not theme or source assets)."""
    root = html_dir()
    skip = ("_static/", "_sources/", "_images/", "_downloads/")
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.html")
                  if not p.relative_to(root).as_posix().startswith(skip))


# --- what the book's configuration says -----------------------------------------------------------------

@functools.cache
def book_config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text()) or {}


def _toc_files(entries) -> list[str]:
    files = []
    for entry in entries or []:
        if "file" in entry:
            files.append(str(entry["file"]))
        for key in ("sections", "chapters"):
            files += _toc_files(entry.get(key))
        for part in entry.get("parts", []) or []:
            files += _toc_files(part.get("chapters"))
    return files


@functools.cache
def toc_chapters() -> list[str]:
    """The documents of _toc.yml, in order, as docnames without suffix ("book/00_preface", ...)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [str(toc["root"])] + _toc_files(toc.get("chapters")) + _toc_files(
        [c for p in toc.get("parts", []) or [] for c in p.get("chapters", [])])
    return [re.sub(r"\.(md|ipynb)$", "", f) for f in files]


@functools.cache
def toc_notebooks() -> list[str]:
    """The documents of _toc.yml that are notebooks (a jupytext header), which get launch buttons; the
    others (the references page) are plain pages."""
    return [d for d in toc_chapters()
            if (ROOT / f"{d}.md").read_text(encoding="utf-8").startswith("---\njupytext:")]


def expected_launch_links(docname: str) -> dict[str, str]:
    """The Colab URL (exact) and the Binder URL prefix and suffix that sphinx-book-theme makes from
    _config.yml's repository and launch_buttons settings for the notebook ``docname``.ipynb."""
    cfg = book_config()
    repo = cfg["repository"]
    org_repo = "/".join(urlsplit(repo["url"]).path.strip("/").split("/")[:2])
    branch = repo.get("branch", "main")
    path = "/".join(p for p in (str(repo.get("path_to_book", "") or "").strip("/"), docname) if p)
    launch = cfg["launch_buttons"]
    return {
        "colab": f"{launch['colab_url'].rstrip('/')}/github/{org_repo}/blob/{branch}/{path}.ipynb",
        "binder_prefix": f"{launch['binderhub_url'].rstrip('/')}/v2/gh/{org_repo}/{branch}?",
        "binder_suffix": f"{path}.ipynb",
    }


# --- serving _build/html ----------------------------------------------------------------------------------

class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


class BookServer:
    """http.server on a free 127.0.0.1 port, serving ``directory`` from a daemon thread."""

    def __init__(self, directory: Path):
        handler = functools.partial(_QuietHandler, directory=str(directory))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def is_local(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("data", "blob", "about") or parts.hostname in ("127.0.0.1", "localhost")


# --- one visit per page ------------------------------------------------------------------------------------

@dataclasses.dataclass
class PageReport:
    page: str
    url: str
    final_url: str = ""
    seconds: float = 0.0
    blocked: list = dataclasses.field(default_factory=list)         # non-localhost URLs we aborted
    bad_responses: list = dataclasses.field(default_factory=list)   # (status, url), same origin, >= 400
    failed_requests: list = dataclasses.field(default_factory=list)  # (failure, url), localhost
    console_errors: list = dataclasses.field(default_factory=list)   # (text, url) not allow-listed
    page_errors: list = dataclasses.field(default_factory=list)      # uncaught exceptions
    allowed_console: int = 0                                         # allow-listed, counted
    allowed_page_errors: int = 0
    images: list = dataclasses.field(default_factory=list)           # {src, width, height}
    math: dict = dataclasses.field(default_factory=dict)
    animations: list = dataclasses.field(default_factory=list)
    widgets: dict = dataclasses.field(default_factory=dict)
    launch_links: list = dataclasses.field(default_factory=list)     # {title, href}
    sidebar_links: list = dataclasses.field(default_factory=list)    # absolute URLs without fragment
    overflowing: list = dataclasses.field(default_factory=list)      # {what, width, column, text}
    text: str = ""                                                   # the page's visible text
    screenshot: str = ""
    errors: list = dataclasses.field(default_factory=list)           # problems of the visit itself

    def as_json(self) -> dict:
        data = dataclasses.asdict(self)
        data["images"] = [{**i, "src": _short(i["src"])} for i in self.images]
        return data


VISITS: dict[str, PageReport] = {}


def _short(url: str, n: int = 120) -> str:
    return url if len(url) <= n else f"{url[:n]}... ({len(url)} chars)"


_JS_IMAGES = """async () => {
  const out = [];
  for (const img of Array.from(document.images)) {
    img.loading = "eager";  // lazy images below the fold must load too
    try { await img.decode(); } catch (e) { /* recorded as naturalWidth 0 */ }
    out.push({src: img.currentSrc || img.src || img.getAttribute("src") || "",
              width: img.naturalWidth, height: img.naturalHeight});
  }
  return out;
}"""

_JS_MATH = """async () => {
  const mathEls = Array.from(document.querySelectorAll("span.math, div.math"));
  const script = Array.from(document.scripts)
    .find(s => /mathjax|tex-mml|tex-chtml|tex-svg/i.test(s.src || ""));
  let started = false;
  if (window.MathJax && window.MathJax.startup && window.MathJax.startup.promise) {
    const timeout = new Promise(resolve => setTimeout(() => resolve(false), 60000));
    started = await Promise.race([window.MathJax.startup.promise.then(() => true), timeout]);
  }
  return {
    elements: mathEls.length,
    rendered: mathEls.filter(e => e.querySelector("mjx-container")).length,
    containers: document.querySelectorAll("mjx-container").length,
    tex_errors: Array.from(document.querySelectorAll("mjx-merror"))
      .map(e => e.getAttribute("data-mjx-error") || e.textContent).slice(0, 10),
    unrendered: mathEls.filter(e => !e.querySelector("mjx-container"))
      .map(e => e.textContent.slice(0, 80)).slice(0, 5),
    mathjax_src: script ? script.src : null,
    mathjax_started: started,
  };
}"""

# Steps every frame of one animation through its own buttons (first, then next, next, ...) and decodes
# the displayed image each time. Returns per-frame sizes and a hash of each frame's src.
_JS_ANIMATION_FRAMES = """async (root, sel) => {
  const img = root.querySelector("img"), slider = root.querySelector("input[type=range]");
  const first = root.querySelector(sel.first), next = root.querySelector(sel.next);
  const hash = s => {
    let h = 5381;
    for (let i = 0; i < s.length; i++) h = (h * 33 + s.charCodeAt(i)) | 0;
    return h;
  };
  first.click();
  const n = Number(slider.max) + 1, frames = [];
  for (let k = 0; k < n; k++) {
    try { await img.decode(); } catch (e) {}
    frames.push({index: Number(slider.value), width: img.naturalWidth, height: img.naturalHeight,
                 hash: hash(img.src)});
    next.click();
  }
  first.click();
  // Controls that show nothing: no icon (Font Awesome's <svg>, which the theme draws without the CDN
  // stylesheet to_jshtml links) and no text.
  const blank = Array.from(root.querySelectorAll("button")).filter(b => {
    const icon = b.querySelector("svg"), box = icon ? icon.getBoundingClientRect() : null;
    return !(b.textContent.trim() || (box && box.width > 0 && box.height > 0));
  }).map(b => b.title || b.className);
  return {frames, blank};
}"""

_JS_WIDGETS_RENDERED = """() => Array.from(document.querySelectorAll('%s')).every(tag => {
  const area = tag.previousElementSibling;
  return area && area.classList.contains("widget-subarea")
    && area.querySelector(".jupyter-widgets, .lm-Widget");
})""" % WIDGET_VIEW

_JS_WIDGETS = """() => Array.from(document.querySelectorAll('%s')).map(tag => {
  const area = tag.previousElementSibling;
  const ok = !!(area && area.classList.contains("widget-subarea"));
  const box = ok ? area.getBoundingClientRect() : {width: 0, height: 0};
  let model = ""; try { model = JSON.parse(tag.textContent).model_id; } catch (e) {}
  return {model_id: model, rendered: ok && !!area.querySelector(".jupyter-widgets, .lm-Widget"),
          width: box.width, height: box.height,
          classes: ok ? Array.from(new Set(Array.from(area.querySelectorAll("[class*='widget-']"))
            .flatMap(e => Array.from(e.classList)).filter(c => c.startsWith("widget-")))).slice(0, 12) : []};
})""" % WIDGET_VIEW


# Code blocks, outputs, tables and pictures in the article that are wider than the space they have: they
# scroll or run off the right edge of the column, at the 1280 px window of VIEWPORT (_static/layout.css).
_JS_OVERFLOWING = """() => {
  const article = document.querySelector('article');
  if (!article) return [];
  const right = article.getBoundingClientRect().right;
  return Array.from(article.querySelectorAll('pre, table, img'))
    .filter(e => e.offsetParent !== null)
    .filter(e => e.scrollWidth > e.clientWidth + 1 || e.getBoundingClientRect().right > right + 1)
    .map(e => ({what: e.tagName.toLowerCase(), width: e.scrollWidth, column: e.clientWidth,
                text: (e.textContent || e.getAttribute('src') || '').trim().slice(0, 100)}));
}"""

_JS_WIDGET_MANAGER = """() => {
  const s = Array.from(document.scripts).find(s => /html-manager|embed-amd/.test(s.src || ""));
  return s ? s.src : null;
}"""


def visit(browser, base_url: str, page: str) -> PageReport:
    """Open ``page`` (relative to _build/html) once, in a fresh browser context, and record everything."""
    if page in VISITS:
        return VISITS[page]
    report = PageReport(page=page, url=urljoin(base_url, page))
    start = time.monotonic()
    context = browser.new_context(viewport=VIEWPORT, service_workers="block")
    context.set_default_timeout(TIMEOUT_MS)
    origin = urlsplit(base_url).netloc

    def route(r):
        url = r.request.url
        if is_local(url):
            r.continue_()
        else:
            report.blocked.append(url)
            r.abort("blockedbyclient")

    def on_response(resp):
        if urlsplit(resp.url).netloc == origin and resp.status >= 400:
            report.bad_responses.append((resp.status, resp.url))

    def on_failed(req):
        if is_local(req.url) and not req.url.startswith(("data:", "blob:")):
            report.failed_requests.append((req.failure, req.url))

    def on_console(msg):
        if msg.type != "error":
            return
        text, where = msg.text, (msg.location or {}).get("url", "")
        if any(rx.search(text) and (scope == "anywhere" or where in report.blocked)
               for rx, scope in CONSOLE_ALLOW):
            report.allowed_console += 1
        else:
            report.console_errors.append((text, where))

    context.route("**/*", route)
    p = context.new_page()
    p.on("response", on_response)
    p.on("requestfailed", on_failed)
    p.on("console", on_console)
    def on_page_error(exc):
        if any(p.search(str(exc)) for p in PAGE_ERROR_ALLOW):
            report.allowed_page_errors += 1
        else:
            report.page_errors.append(str(exc))

    p.on("pageerror", on_page_error)
    try:
        p.goto(report.url, wait_until="load")
        try:
            p.wait_for_load_state("networkidle", timeout=30_000)
        except Exception:  # noqa: BLE001 - a page that keeps polling is not a failure by itself
            pass
        report.final_url = p.url
        report.math = p.evaluate(_JS_MATH)
        waited = ""
        if p.locator(WIDGET_VIEW).count():
            try:
                p.wait_for_function(_JS_WIDGETS_RENDERED, timeout=30_000)
            except Exception as exc:  # noqa: BLE001 - recorded; test_widgets_render reports it
                waited = f"not all rendered after 30 s ({str(exc).splitlines()[0]})"
        report.widgets = {"views": p.evaluate(_JS_WIDGETS), "state_scripts": p.locator(WIDGET_STATE).count(),
                          "manager_src": p.evaluate(_JS_WIDGET_MANAGER), "wait": waited}
        report.images = p.evaluate(_JS_IMAGES)
        report.overflowing = p.evaluate(_JS_OVERFLOWING)
        report.text = p.evaluate("() => document.body.innerText")
        report.launch_links = p.eval_on_selector_all(
            ".dropdown-launch-buttons a", "els => els.map(a => ({title: a.title, href: a.href}))")
        report.sidebar_links = sorted({h.split("#")[0] for h in p.eval_on_selector_all(
            "nav.bd-docs-nav a[href]", "els => els.map(a => a.href)")})

        shot = screenshot_dir() / (re.sub(r"\.html$", "", page) + ".png")
        shot.parent.mkdir(parents=True, exist_ok=True)
        p.screenshot(path=str(shot), full_page=True)
        report.screenshot = str(shot)

        report.animations = _check_animations(p)
    except Exception as exc:  # noqa: BLE001 - the tests report it with the page's name
        report.errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        context.close()
        report.seconds = round(time.monotonic() - start, 2)
        VISITS[page] = report
    return report


def _check_animations(p) -> list[dict]:
    results = []
    for kind, sel in ANIMATION_KINDS.items():
        roots = p.locator(sel["root"])
        for i in range(roots.count()):
            root = roots.nth(i)
            res = {"kind": kind, "index": i}
            try:
                root.scroll_into_view_if_needed()
                result = root.evaluate(_JS_ANIMATION_FRAMES, sel)
                frames = result["frames"]
                res["blank_buttons"] = result["blank"]
                res["frames"] = len(frames)
                res["bad_frames"] = [f["index"] for f in frames if f["width"] == 0 or f["height"] == 0]
                res["frame_size"] = [frames[0]["width"], frames[0]["height"]] if frames else None
                # The user's view of it: a real click on the step-forward button, from the first frame.
                img, slider = root.locator("img").first, root.locator("input[type=range]").first
                root.locator(sel["first"]).click()
                before_src, before_value = img.get_attribute("src") or "", slider.input_value()
                root.locator(sel["next"]).click()
                p.wait_for_timeout(50)
                after_src, after_value = img.get_attribute("src") or "", slider.input_value()
                # Play for a moment, then pause: the slider must have moved on (page errors are recorded
                # for the whole visit, so a throwing timer callback fails test_page_loads_cleanly)
                root.locator(sel["play"]).click()
                p.wait_for_timeout(700)
                root.locator(sel["pause"]).click()
                played_value = slider.input_value()
                res.update(
                    value_before=before_value, value_after=after_value, value_played=played_value,
                    src_changed=before_src != after_src,
                    frames_0_1_identical=len(frames) > 1 and frames[0]["hash"] == frames[1]["hash"],
                )
            except Exception as exc:  # noqa: BLE001
                res["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
            results.append(res)
    return results
