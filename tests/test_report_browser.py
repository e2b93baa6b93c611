"""The report as a reader sees it: its HTML laid out by a real browser (headless Chromium) at
1,400 px, and its figures checked pixel by pixel.

A table wider than the page's column must scroll in its own box, never push the page wider or
cut its caption; every figure must load, fit the column, and draw its content inside its
bounds (a clean margin: nothing clipped at an edge). ``.ci/run`` installs Debian's chromium
where it is missing and sets ``RPROP_BENCH_TEST_BROWSER=required``, so that the test runs
there instead of skipping.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from rprop_bench import report

pytestmark = pytest.mark.slow

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
WIDTH = 1400  # px: a laptop's browser window

#: Run in the page once it and its images have loaded: what overflows the page's column.
MEASURE = """<script>
window.addEventListener("load", () => {
  document.querySelectorAll("details").forEach((d) => { d.open = true; });  // as a reader would
  const column = document.body.getBoundingClientRect();
  const inside = (r) => r.left >= column.left - 1 && r.right <= column.right + 1;
  const out = {
    scrollWidth: document.documentElement.scrollWidth,
    clientWidth: document.documentElement.clientWidth,
    tables: [...document.querySelectorAll("figure.table")].map((t) => ({
      id: t.id,
      fits: inside(t.getBoundingClientRect()),
      captionFits: inside(t.querySelector("figcaption").getBoundingClientRect()),
      scrolls: t.querySelector(".scroll").scrollWidth > t.querySelector(".scroll").clientWidth,
    })),
    images: [...document.images].map((i) => ({
      src: i.getAttribute("src"), loaded: i.complete && i.naturalWidth > 0,
      fits: inside(i.getBoundingClientRect()),
    })),
  };
  const pre = document.createElement("pre");
  pre.id = "measured";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def _browser() -> str | None:
    return next((found for name in BROWSERS if (found := shutil.which(name))), None)


@pytest.fixture(scope="module")
def rendered(standard_store, tmp_path_factory) -> Path:
    """The standard runs' report (PNG figures), written once for this module."""
    out = tmp_path_factory.mktemp("browser_report")
    options = report.ReportOptions(out=out, formats=("png",), log_to_mlflow=False, progress=False)
    report.build_report(standard_store, "exp", options)
    return out


def _measure(index: Path, browser: str, tmp: Path) -> dict:
    page = tmp / "measured.html"
    html = index.read_text(encoding="utf-8").replace("</body>", MEASURE + "</body>")
    page.write_text(html, encoding="utf-8")
    shutil.copytree(index.parent / "figures", tmp / "figures", dirs_exist_ok=True)
    result = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--window-size={WIDTH},1000", "--virtual-time-budget=15000", "--dump-dom",
         page.as_uri()],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    found = re.search(r'<pre id="measured">(.*?)</pre>', result.stdout, re.S)
    assert found, f"the browser gave no measurements (exit {result.returncode}): {result.stderr}"
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))


def test_no_table_or_figure_overflows_the_page_in_a_browser(rendered, tmp_path):
    browser = _browser()
    if browser is None:
        if os.environ.get("RPROP_BENCH_TEST_BROWSER") == "required":
            pytest.fail("RPROP_BENCH_TEST_BROWSER=required, but no chromium is installed")
        pytest.skip("no chromium installed (.ci/run installs Debian's)")
    measured = _measure(rendered / "index.html", browser, tmp_path)
    assert measured["scrollWidth"] <= measured["clientWidth"], measured  # no sideways page
    tables, images = measured["tables"], measured["images"]
    assert len(tables) >= 10, measured
    assert len(images) >= 5, measured
    assert [t["id"] for t in tables if not (t["fits"] and t["captionFits"])] == []
    assert [i["src"] for i in images if not (i["loaded"] and i["fits"])] == []


def test_every_figure_draws_inside_its_bounds(rendered):
    figures = sorted((rendered / "figures").glob("*.png"))
    assert len(figures) >= 5
    for path in figures:
        pixels = matplotlib.image.imread(path)[..., :3]
        ink = (pixels < 0.98).any(axis=2)  # not the white page
        assert ink.mean() > 0.01, f"{path.name} is (nearly) empty"
        edge = np.concatenate([ink[:2].ravel(), ink[-2:].ravel(), ink[:, :2].ravel(),
                               ink[:, -2:].ravel()])  # fmt: skip
        assert not edge.any(), f"{path.name} draws up to its edge: something is clipped"
