/* Loaded on pages with embedded ipywidgets, between require.js and @jupyter-widgets/html-manager's
 * embed-amd.js, when tools/vendor_js.sh has vendored them (tools/offline_js.py adds it; vendor_js.sh copies
 * it to _static/offline/widgets/). Two fixes for html-manager 1.0.x on this book's pages:
 *
 * 1. Fonts. The webpack code of each AMD module in embed-amd.js ("@jupyter-widgets/controls", ".../base",
 *    "@jupyter-widgets/html-manager/dist/libembed-amd") looks for its Font Awesome fonts next to the URL
 *    RequireJS gives the module, which by default is relative to the PAGE (book/@jupyter-widgets/*.woff2:
 *    404, with the CDN too). Map those module URLs to this folder, where vendor_js.sh put the fonts.
 *
 * 2. MathJax. The widgets typeset their labels with MathJax 2's API, MathJax.Hub.Queue(["Typeset",
 *    MathJax.Hub, element]). The book loads MathJax 3, which has no Hub, so every widget with a description
 *    throws "Cannot read properties of undefined (reading 'Queue')" while it renders. Give MathJax 3 that
 *    one call. MathJax is loaded with defer, so it is there by DOMContentLoaded, which is also before
 *    html-manager renders the widgets (its listener is added after this one).
 */
(function () {
  var here = document.currentScript.src.replace(/[?#].*$/, "").replace(/\/[^\/]*$/, "");
  window.require.config({paths: {
    "@jupyter-widgets": here,                 // @jupyter-widgets/controls -> here/controls.js
    "@jupyter-widgets/html-manager/dist": here  // .../dist/libembed-amd -> here/libembed-amd.js
  }});

  document.addEventListener("DOMContentLoaded", function () {
    var mj = window.MathJax;
    if (!mj || mj.Hub) return;  // no MathJax on this page (widgets skip typesetting), or a MathJax 2
    mj.Hub = {
      Queue: function (command) {
        var element = command && command[2];
        if (element && element.nodeType === 1 && mj.startup && mj.startup.promise) {
          mj.startup.promise.then(function () { return mj.typesetPromise([element]); });
        }
      }
    };
  });
})();
