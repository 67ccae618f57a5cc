"""Sphinx extension: serve the book's JavaScript from the book itself, not from CDNs, when it is vendored.

A stock Jupyter Book 1.x page loads MathJax from cdn.jsdelivr.net (Sphinx's ``mathjax_path``) and, on
pages that embed ipywidget views, RequireJS and ``@jupyter-widgets/html-manager`` from cdnjs/jsdelivr
(MyST-NB's ``nb_ipywidgets_js``). Offline, math stays raw TeX and widgets stay blank.

``tools/vendor_js.sh`` (run before the build; CI does) unpacks pinned copies of those packages into
``_build/vendor_js/static/offline/``. When that folder is there, this extension copies it to
``_build/html/_static/offline/`` and points ``mathjax_path`` and ``nb_ipywidgets_js`` at it. When it is
not there, it changes nothing and the book uses the CDNs, exactly as before; it says which on the build
log (as an info line, not a warning: builds use -W).
Settings given explicitly in ``_config.yml`` (a non-default ``mathjax_path`` or ``nb_ipywidgets_js``)
win.

Enabled in ``_config.yml``::

    sphinx:
      local_extensions:
        offline_js: tools/

``VNCA_VENDOR_JS_DIR`` overrides the vendor folder (default ``<book root>/_build/vendor_js``), as it
does for ``tools/vendor_js.sh``.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from sphinx.util import logging

logger = logging.getLogger(__name__)

MATHJAX = "offline/mathjax/tex-mml-chtml.js"
REQUIREJS = "offline/requirejs/require.js"
HTML_MANAGER = "offline/widgets/embed-amd.js"
WIDGETS_SETUP = "offline/widgets/widgets_setup.js"  # tools/widgets_setup.js: fonts, MathJax 3


def vendor_static_dir(srcdir: str | os.PathLike) -> Path:
    """The folder that holds ``offline/`` (what tools/vendor_js.sh wrote)."""
    root = os.environ.get("VNCA_VENDOR_JS_DIR")
    base = Path(root) if root else Path(srcdir) / "_build" / "vendor_js"
    if not base.is_absolute():
        base = Path(srcdir) / base
    return base / "static"


def _config_inited(app, config) -> None:
    static = vendor_static_dir(app.srcdir)
    missing = [p for p in (MATHJAX, REQUIREJS, WIDGETS_SETUP, HTML_MANAGER) if not (static / p).is_file()]
    if missing:
        logger.info("offline_js: no vendored JavaScript in %s (missing %s); pages load MathJax and the "
                    "widget manager from CDNs. Run tools/vendor_js.sh before building for an offline book.",
                    static, ", ".join(missing))
        return

    app.offline_js_static = static  # copied into _static/ at builder-inited (below)

    from sphinx.ext.mathjax import MATHJAX_URL
    if config.mathjax_path == MATHJAX_URL:
        config.mathjax_path = MATHJAX  # relative: Sphinx prefixes _static/ per page

    # The keys are the script URLs; relative ones are resolved against _static/ per page, like
    # mathjax_path. The CDN attribute of the default is dropped so that html-manager's own default
    # applies only to widget modules it does not bundle (none of ipywidgets' own controls).
    from myst_nb.core.config import ipywidgets_js_factory
    if config.nb_ipywidgets_js == ipywidgets_js_factory():
        config.nb_ipywidgets_js = {REQUIREJS: {}, WIDGETS_SETUP: {}, HTML_MANAGER: {}}
    logger.info("offline_js: MathJax and the ipywidgets manager are served from _static/offline/ (%s)",
                static)


def _builder_inited(app) -> None:
    """Copy the vendored files into <outdir>/_static/offline/, overwriting what an earlier build left.

    Not through html_static_path: Sphinx copies static files only when it writes pages, so a build with
    no changed source ("no targets are out of date") would keep serving an older copy."""
    static = getattr(app, "offline_js_static", None)
    if static is None or app.builder.format != "html":
        return
    shutil.copytree(static / "offline", Path(app.outdir) / "_static" / "offline", dirs_exist_ok=True)


def setup(app):
    # Before MyST-NB reads nb_ipywidgets_js (at builder-inited) and before Sphinx's mathjax extension
    # reads mathjax_path (per page).
    app.connect("config-inited", _config_inited, priority=400)
    app.connect("builder-inited", _builder_inited)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
