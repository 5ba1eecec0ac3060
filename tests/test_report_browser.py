"""The HTML report in a real browser: headless Chromium loads it without console output, the interactive view
answers a scripted interaction (slider and selects, through their own events), and a screenshot is taken.

Needs the ``chromium`` binary (Debian: ``apt-get install -y chromium``); skipped only when none is installed.
Run as a script to refresh the documentation's screenshot:
``PYTHONPATH=src python tests/test_report_browser.py docs/report_screenshot.png``.
"""
import html
import json
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import lstmkit

pytest.importorskip("matplotlib")
from lstmkit.introspect.report import one_hot, write_report  # noqa: E402

BROWSER = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
TEXT = "the quick brown fox jumps over the lazy dog. "

# appended to a copy of the report: drives the view through the same events a user's input fires,
# then writes what the readout said before and after, and whether the canvas changed, into the DOM
PROBE = """<script>
(function () {
  const $ = (id) => document.getElementById(id);
  const before = $("readout").textContent, plot0 = $("plot").toDataURL();
  $("step").value = "5"; $("step").dispatchEvent(new Event("input"));
  $("quantity").value = "f"; $("quantity").dispatchEvent(new Event("change"));
  $("unit").value = "3"; $("unit").dispatchEvent(new Event("change"));
  const out = document.createElement("pre"); out.id = "probe";
  out.textContent = JSON.stringify({before: before, after: $("readout").textContent,
                                    redrawn: plot0 !== $("plot").toDataURL()});
  document.body.appendChild(out);
})();
</script></body>"""


def chromium(url, *args):
    """Run headless Chromium on ``url``; returns (DOM or "", the console messages it logged)."""
    run = subprocess.run(
        [BROWSER, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", "--enable-logging=stderr", "--v=0",
         "--virtual-time-budget=5000", *args, url], capture_output=True, text=True, timeout=120)
    # every console message (log, warning, error, uncaught exception) is logged as ...:CONSOLE:<line>] "..."
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    return run.stdout, console


def make_report(path):
    """A report of a small bidirectional char-level LSTM on TEXT (the model, as used by the test)."""
    vocab = sorted(set(TEXT))
    layer = lstmkit.LSTM(len(vocab), 8, bidirectional=True, seed=0, dtype="float64")
    write_report(layer, one_hot(TEXT, vocab), path, text=TEXT, overwrite=True)
    return layer, vocab


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    if BROWSER is None:
        pytest.skip("no Chromium installed (Debian: apt-get install -y chromium)")
    tmp = tmp_path_factory.mktemp("report")
    layer, vocab = make_report(tmp / "report.html")
    probed = tmp / "probed.html"
    probed.write_text((tmp / "report.html").read_text().replace("</body>", PROBE))
    return tmp, layer, vocab


def test_console_check_sees_errors(tmp_path):
    """The check below is not vacuous: a page that throws is caught."""
    if BROWSER is None:
        pytest.skip("no Chromium installed (Debian: apt-get install -y chromium)")
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>undefinedFunction();</script></body></html>")
    _, console = chromium(bad.as_uri(), "--dump-dom")
    assert any("Uncaught ReferenceError" in line for line in console)


def test_report_loads_without_console_output(report):
    tmp, _, _ = report
    dom, console = chromium((tmp / "report.html").as_uri(), "--dump-dom")
    assert console == []
    readout = html.unescape(re.search(r'<div id="readout">(.*?)</div>', dom).group(1))
    assert readout.startswith('t=0 "t"  layer 0 forward  i[unit 0] = ')  # the script ran and drew
    assert dom.count("<option") == 2 + 6 + 8  # directions, quantities (i f g o c h), units


def test_interactive_view_responds(report):
    tmp, layer, vocab = report
    dom, console = chromium((tmp / "probed.html").as_uri(), "--dump-dom")
    assert console == []
    probe = json.loads(html.unescape(re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S).group(1)))
    f = layer.trace(one_hot(TEXT, vocab)).layers[0][0].gates["f"][5, 0, 3]
    assert probe["before"] != probe["after"]
    assert probe["after"] == f't=5 "u"  layer 0 forward  f[unit 3] = {round(float(f), 4):.4f}'
    assert probe["redrawn"]


def test_screenshot(report):
    tmp, _, _ = report
    shot = tmp / "shot.png"
    _, console = chromium((tmp / "probed.html").as_uri(), f"--screenshot={shot}", "--window-size=1200,1400")
    assert console == []
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", data[16:24]) == (1200, 1400)
    assert len(data) > 50_000  # a rendered page, not a blank one


if __name__ == "__main__":  # refresh the documentation's screenshot (the interacted view)
    if BROWSER is None:
        sys.exit("no Chromium installed (Debian: apt-get install -y chromium)")
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/report_screenshot.png").resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        make_report(Path(tmp) / "report.html")
        page = Path(tmp) / "probed.html"
        page.write_text((Path(tmp) / "report.html").read_text().replace("</body>", PROBE))
        _, console = chromium(page.as_uri(), f"--screenshot={out}", "--window-size=1200,1400")
    print(f"wrote {out}" + (f"; console: {console}" if console else ""))
