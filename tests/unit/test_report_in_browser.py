"""report.html in a real browser (headless Chromium, no network): a link to a failing request opens
its row, and the opened row shows the request as sent and the raw answer, one SSE event per line.

By hand: chromium --headless --no-sandbox --dump-dom "file://$PWD/reports/RUN/report.html#request-1-2"
(or --screenshot=shot.png --window-size=1200,4000 to look at it).
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess

import pytest
from test_report_evidence import write_shapes_run

from harness.presentation.report import build_report

BROWSER = next(
    (shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome") if shutil.which(name)), None
)

NO_BROWSER = "no headless Chromium on this machine (apt-get install chromium, or brew install chromium)"
# CI (.ci/run) installs Chromium and sets this: there the test must run, never skip.
REQUIRED = os.environ.get("HARNESS_REQUIRE_BROWSER") == "1"

pytestmark = pytest.mark.skipif(BROWSER is None and not REQUIRED, reason=NO_BROWSER)


@pytest.fixture(autouse=True)
def _browser_present():
    if BROWSER is None:
        pytest.fail(f"HARNESS_REQUIRE_BROWSER=1 but {NO_BROWSER}")


def dump_dom(url: str, tmp_path) -> str:
    command = [
        str(BROWSER),
        "--headless",
        "--no-sandbox",  # tests may run as root in a container
        "--disable-gpu",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=3000",
        "--dump-dom",
        url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_a_failing_row_opens_on_its_request_and_raw_answer(tmp_path):
    page = build_report(write_shapes_run(tmp_path / "run"))["report_html"]
    dom = dump_dom(f"{page.as_uri()}#request-1-2", tmp_path)  # part 2 of the first failing row: its request
    opened = re.search(r'<details id="request-1" open[^>]*>(.*?)</details>', dom, flags=re.S)
    assert opened, "the browser did not open the row the link points into"
    row = html.unescape(opened.group(1))
    assert "Request (as sent" in row and '"model": "tools-hermes"' in row and "Größe" in row
    assert re.search(r"Raw answer</h4><pre>data: \{[^\n]*\}\ndata: \[DONE\]</pre>", row)
    assert 'curl -sS -N "${HARNESS_BASE_URL:-http://127.0.0.1:8081}/v1/chat/completions"' in row
    # The other failing row stays closed until opened.
    assert re.search(r'<details id="request-2">', dom)
