"""The report as a person sees it: index.html opened in headless Chromium.

Chromium runs once per page with ``--dump-dom`` on a copy of the page with a
small probe added: a capture-phase ``error`` listener and a ``console.error``
hook in <head>, and at ``load`` every image's natural size and its pixels
(drawn onto a canvas, which forces the decode) summarised into ``data-``
attributes of <body>, which the dumped DOM carries back. ``--enable-logging=stderr`` adds uncaught exceptions and other
console messages, which the page (it has no script of its own) must not
produce. Control pages prove that each check can fail.

Skipped where Chromium is not installed (``make browser`` installs Debian's).
"""
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers.report import HOSTILE, build_report, hostile_records
from tests.helpers.report import small_run  # noqa: F401  (a fixture)

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (`make browser` installs it)")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=15000", "--dump-dom"]

HEAD_PROBE = """<script>
window.__errors = [];
window.addEventListener('error', function (e) {
  window.__errors.push('error: ' + (e.message || (e.target && (e.target.src || e.target.tagName)) || '?'));
}, true);
window.addEventListener('unhandledrejection', function (e) { window.__errors.push('rejection: ' + e.reason); });
(function () {
  var original = console.error;
  console.error = function () {
    window.__errors.push('console.error: ' + Array.prototype.join.call(arguments, ' '));
    return original.apply(console, arguments);
  };
})();
</script>"""

LOAD_PROBE = """<script>
window.addEventListener('load', function () {
  // Synchronously at load: each image's natural size, and its pixels drawn onto a canvas
  // (drawImage forces the decode); 'inked' counts thumbnail pixels that are not blank.
  var sizes = Array.prototype.map.call(document.images, function (img) {
    if (!img.complete || !img.naturalWidth) { return 'not decoded: ' + img.src.slice(0, 40); }
    var c = document.createElement('canvas');
    c.width = 64; c.height = 64;
    var g = c.getContext('2d');
    g.drawImage(img, 0, 0, 64, 64);
    var d = g.getImageData(0, 0, 64, 64).data, inked = 0;
    for (var i = 0; i < d.length; i += 4) {
      if (d[i + 3] > 0 && (d[i] < 250 || d[i + 1] < 250 || d[i + 2] < 250)) { inked++; }
    }
    return [img.naturalWidth, img.naturalHeight, inked];
  });
  document.body.setAttribute('data-images', JSON.stringify(sizes));
  document.body.setAttribute('data-errors', JSON.stringify(window.__errors));
});
</script>"""


def chromium(page: Path, tmp_path: Path):
    """(dumped DOM, console lines) of ``page`` in a fresh headless Chromium profile."""
    profile = tmp_path / f"profile-{page.stem}"
    proc = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", page.resolve().as_uri()],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return proc.stdout, console


def probed(page_html: str) -> str:
    assert page_html.count("<head>") == 1 and page_html.count("</body>") == 1
    return page_html.replace("<head>", "<head>" + HEAD_PROBE, 1).replace("</body>", LOAD_PROBE + "</body>", 1)


def inspect(page_html: str, tmp_path: Path, name="page"):
    """Open a probed copy; return (image sizes or decode errors, page errors, console lines)."""
    path = tmp_path / f"{name}.html"
    path.write_text(probed(page_html))
    dom, console = chromium(path, tmp_path)
    body = re.search(r"<body([^>]*)>", dom)
    assert body, dom[:2000]
    attrs = dict(re.findall(r'(data-[a-z]+)="([^"]*)"', body.group(1)))
    assert "data-images" in attrs, f"the probe did not run; console: {console}"
    unescape = lambda s: json.loads(s.replace("&quot;", '"').replace("&amp;", "&"))  # noqa: E731
    return unescape(attrs["data-images"]), unescape(attrs["data-errors"]), console


def assert_renders(page_html, tmp_path, name):
    images, errors, console = inspect(page_html, tmp_path, name)
    assert not errors, errors
    assert not console, console
    n_img = len(re.findall(r"<img\b", page_html))
    assert len(images) == n_img > 0
    for size in images:
        assert isinstance(size, list), size
        width, height, inked = size
        assert width > 100 and height > 100 and inked > 100, size  # a plot, not a blank


# ---- the report --------------------------------------------------------------

def test_fresh_report_renders_without_errors(small_run, tmp_path):  # noqa: F811
    build_report(small_run[1], tmp_path / "rep")
    page = (tmp_path / "rep" / "index.html").read_text()
    assert_renders(page, tmp_path, "fresh")
    dom, console = chromium(tmp_path / "rep" / "index.html", tmp_path)  # unprobed, as shipped
    assert not console and "<script" not in dom.lower()
    assert "<h1>bpcheck report: reference beside torch and jax</h1>" in dom


COMMITTED = Path(__file__).parents[1] / "reports" / "index.html"


@pytest.mark.skipif(not COMMITTED.exists(), reason="no committed reports/index.html (run `make report`)")
def test_committed_report_renders_without_errors(tmp_path):
    assert_renders(COMMITTED.read_text(), tmp_path, "committed")


def test_hostile_strings_stay_text(tmp_path):
    build_report(hostile_records(), tmp_path / "rep")
    page = tmp_path / "rep" / "index.html"
    dom, console = chromium(page, tmp_path)
    assert not console, console
    assert re.search(r"<title>bpcheck report: mine beside torch and jax</title>", dom), "a payload rewrote the title"
    assert "<script" not in dom.lower()
    assert len(re.findall(r"<img\b", dom)) == len(re.findall(r"<figure\b", dom))  # no injected <img>
    assert HOSTILE.replace("<", "&lt;").replace(">", "&gt;") in dom  # shown as text


# ---- controls: each check can fail --------------------------------------------

PIXEL = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
BASE = '<!DOCTYPE html><html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>t</title></head><body>{}</body></html>'


def test_control_good_image_is_decoded(tmp_path):
    images, errors, console = inspect(BASE.format(f'<img src="data:image/png;base64,{PIXEL}">'), tmp_path)
    assert images == [[1, 1, 4096]] and not errors and not console


def test_control_blank_plot_is_caught(tmp_path):
    import base64
    import io

    from matplotlib.figure import Figure
    buf = io.BytesIO()
    Figure(figsize=(3, 3), dpi=80).savefig(buf, format="png")  # white, nothing drawn
    page = BASE.format(f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">')
    images, errors, console = inspect(page, tmp_path)
    assert images == [[240, 240, 0]] and not errors and not console
    with pytest.raises(AssertionError):
        assert_renders(page, tmp_path, "blank")


def test_control_broken_image_is_caught(tmp_path):
    images, errors, _ = inspect(BASE.format('<img src="data:image/png;base64,AAAA">'), tmp_path)
    assert isinstance(images[0], str) and "not decoded" in images[0]
    assert errors  # the load error reached the capture-phase listener


def test_control_console_error_is_caught(tmp_path):
    _, errors, console = inspect(BASE.format("<script>console.error('boom')</script>"), tmp_path)
    assert any("boom" in e for e in errors) and any("boom" in line for line in console)


def test_control_uncaught_exception_is_caught(tmp_path):
    _, errors, console = inspect(BASE.format("<script>noSuchFunction()</script>"), tmp_path)
    assert any("noSuchFunction" in e for e in errors)
    assert any("Uncaught ReferenceError" in line for line in console)
