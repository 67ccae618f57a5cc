#!/usr/bin/env bash
# Vendor the JavaScript that the built book would otherwise load from CDNs, so that the HTML book renders
# with no network (CI builds offline but for the npm registry; readers may read it offline too):
#
#   MathJax 3 (npm "mathjax")                      every page with math; Sphinx's default is cdn.jsdelivr.net
#   @jupyter-widgets/html-manager + RequireJS      pages that embed ipywidget views (chapter 11); MyST-NB's
#                                                  defaults are cdn.jsdelivr.net and cdnjs.cloudflare.com
#
# Run it from the repository root BEFORE `jupyter-book build .` (after any `rm -rf _build`):
#
#   tools/vendor_js.sh && jupyter-book build . -W --keep-going
#
# It only fetches the three package tarballs with `npm pack` (no dependencies, no node_modules, no lock
# file) and unpacks the files the pages use into _build/vendor_js/static/offline/. The Sphinx extension
# tools/offline_js.py (listed in _config.yml under sphinx.local_extensions) finds them there, copies
# them to _build/html/_static/offline/ and points mathjax_path and nb_ipywidgets_js at them; without
# this script the build still works and the pages use the CDNs, as a stock Jupyter Book does.
#
# Versions are pinned: MathJax 3 (what Sphinx 7 configures), html-manager 1.0.x (the embedder for
# ipywidgets 8, whose widget state declares @jupyter-widgets/controls 2.0.0), RequireJS 2.3.x.
set -euo pipefail
cd "$(dirname "$0")/.."

MATHJAX=mathjax@3.2.2
HTML_MANAGER=@jupyter-widgets/html-manager@1.0.15
REQUIREJS=requirejs@2.3.8
LAYOUT=4  # bump when what this script writes changes, so that an existing copy is redone

dest=${VNCA_VENDOR_JS_DIR:-_build/vendor_js}/static/offline
stamp="$dest/VERSIONS"
want="$MATHJAX $HTML_MANAGER $REQUIREJS layout-$LAYOUT"
setup_js() {  # fonts and MathJax 3 fixes for html-manager, loaded between require.js and embed-amd.js
    cp tools/widgets_setup.js "$dest/widgets/"
}
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    setup_js
    echo "vendor_js: up to date in $dest ($want)"
    exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent --no-fund --no-audit "$MATHJAX" "$HTML_MANAGER" "$REQUIREJS" >/dev/null)
for tgz in "$tmp"/*.tgz; do
    mkdir -p "${tgz%.tgz}" && tar -xzf "$tgz" -C "${tgz%.tgz}"
done

rm -rf "$dest" && mkdir -p "$dest/mathjax" "$dest/widgets" "$dest/requirejs"

# MathJax: the combined component Sphinx loads (tex-mml-chtml.js) and everything it may load lazily
# (TeX extensions via autoload, CHTML fonts, the menu, a11y and speech); the other combined components
# (tex-svg.js, ...) are never referenced and are left out (about 14 MB of the 24 MB).
mj="$tmp"/mathjax-*/package
cp $mj/LICENSE "$dest/mathjax/"
cp $mj/es5/tex-mml-chtml.js "$dest/mathjax/"
for d in $mj/es5/*/; do cp -r "$d" "$dest/mathjax/"; done

# html-manager: the AMD embedder MyST-NB loads and the Font Awesome 4 fonts its CSS refers to (the
# widgets' icons); not the non-AMD embed.js, libembed-amd.js or source maps.
hm="$tmp"/jupyter-widgets-html-manager-*/package
cp $hm/dist/embed-amd.js "$dest/widgets/"
find $hm/dist -maxdepth 1 -type f \( -name '*.woff2' -o -name '*.woff' -o -name '*.ttf' -o -name '*.eot' \
    -o -name '*.svg' \) -exec cp {} "$dest/widgets/" \;
cp $hm/package.json "$dest/widgets/"
ls $hm/LICENSE* >/dev/null 2>&1 && cp $hm/LICENSE* "$dest/widgets/"

setup_js

rj="$tmp"/requirejs-*/package
cp $rj/require.js $rj/package.json "$dest/requirejs/"
ls $rj/LICENSE* >/dev/null 2>&1 && cp $rj/LICENSE* "$dest/requirejs/"

echo "$want" >"$stamp"
echo "vendor_js: $want -> $dest ($(du -sh "$dest" | cut -f1))"
