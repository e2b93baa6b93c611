"""End to end: a real small sweep into a temporary SQLite store, then ``report``.

Subprocesses of ``python -m rprop_bench``, as a user runs them; marked slow.
"""

from __future__ import annotations

import statistics
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image
import pandas as pd
import pytest
from harness_helpers import run_cli

from rprop_bench import schema

pytestmark = pytest.mark.slow


def _bench(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m rprop_bench ARGS`` that must succeed; its output shows if it does not."""
    done = run_cli(*args, cwd=cwd, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.fixture(scope="module")
def sweep_and_report(tmp_path_factory) -> tuple[Path, str, Path]:
    cwd = tmp_path_factory.mktemp("e2e")
    uri = f"sqlite:///{cwd / 'mlflow.db'}"
    common = [f"tracking.uri={uri}", "tracking.experiment=e2e", "train.epochs=30"]
    _bench(
        cwd, "sweep", "optimizer=irprop_plus,sgd", "problem=line,iris", "train.seed=0,1", *common
    )
    # a run that diverges (SGD with a huge learning rate): FAILED in MLflow
    diverged = run_cli(
        "run", "optimizer=sgd", "optimizer.lr=1e6", "problem=line", "train.seed=7", *common, cwd=cwd
    )
    assert "FAILED" in diverged.stdout + diverged.stderr
    out = cwd / "reports" / "e2e"
    done = _bench(
        cwd,
        "report",
        "experiment=e2e",
        f"tracking.uri={uri}",
        "report.sweep=all",
        f"report.out={out}",
        "report.formats=[pdf,png]",
    )
    assert "9 runs (1 failed)" in done.stdout
    return cwd, uri, out


def test_report_files_are_valid(sweep_and_report):
    _, _, out = sweep_and_report
    from pypdf import PdfReader

    pdfs = sorted((out / "figures").glob("*.pdf"))
    names = {p.stem for p in pdfs}
    assert {
        "line_loss_curves",
        "iris_step_sizes",
        "performance_profiles",
        "probability_of_improvement",
        "line_seed_example",
    } <= names
    # a critical-difference diagram exactly where the omnibus test rejected
    ranks = pd.read_csv(out / "tables" / "ranks.csv")
    criteria = (("test_loss", "final test loss"), ("final_train_loss", "final training loss"))
    for key, label in criteria:
        rejects = bool(ranks.loc[ranks["criterion"] == label, "omnibus_rejects"].all())
        assert (f"cd_diagram_{key}" in names) == rejects, (key, rejects)
    for pdf in pdfs:
        assert pdf.read_bytes().startswith(b"%PDF")
        assert len(PdfReader(str(pdf)).pages) == 1
        assert matplotlib.image.imread(pdf.with_suffix(".png")).ndim == 3

    refs: list[str] = []

    class Refs(HTMLParser):
        def handle_starttag(self, tag, attrs):
            refs.extend(v for k, v in attrs if k in ("src", "href") and v)

    parser = Refs()
    parser.feed((out / "index.html").read_text(encoding="utf-8"))
    assert refs
    assert all(r.startswith(("data:image/png;base64,", "#")) for r in refs)
    assert (out / "report.md").is_file()


def test_table_values_match_the_runs_metrics(sweep_and_report):
    from mlflow import MlflowClient

    _, uri, out = sweep_and_report
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("e2e")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    by_key: dict[tuple[str, str], list[float]] = {}
    for r in runs:
        tags = r.data.tags
        if tags.get(schema.TAG_RUN_KIND) != schema.RUN_KIND_TRAINING or r.info.status != "FINISHED":
            continue
        key = (tags[schema.TAG_PROBLEM], tags[schema.TAG_VARIANT])
        by_key.setdefault(key, []).append(r.data.metrics[schema.TEST_LOSS])
    assert len(by_key) == 4
    for problem in ("line", "iris"):
        table = pd.read_csv(out / "tables" / f"{problem}_final.csv").set_index("method")
        for method in ("irprop+", "sgd"):
            losses = by_key[(problem, method)]
            assert len(losses) == 2
            assert table.loc[method, "test_loss_median"] == pytest.approx(statistics.median(losses))
            assert table.loc[method, "test_loss_q25"] == pytest.approx(
                min(losses) + 0.25 * (max(losses) - min(losses))
            )


def test_the_diverged_run_appears_as_failed(sweep_and_report):
    _, _, out = sweep_and_report
    line = pd.read_csv(out / "tables" / "line_final.csv").set_index("method")
    assert line.loc["sgd", "n_runs"] == 3
    assert line.loc["sgd", "n_failed"] == 1
    assert line.loc["irprop+", "n_failed"] == 0
    runs = pd.read_csv(out / "tables" / "runs.csv")
    failed = runs[runs["failed"]]
    assert len(failed) == 1
    assert failed.iloc[0]["seed"] == 7
    assert "inf" in failed.iloc[0]["failure_reason"] or "nan" in failed.iloc[0]["failure_reason"]
    assert "train loss became" in (out / "index.html").read_text(encoding="utf-8")


def test_report_of_a_missing_experiment_fails_cleanly(sweep_and_report):
    cwd, uri, _ = sweep_and_report
    done = run_cli("report", "experiment=nope", f"tracking.uri={uri}", cwd=cwd)
    assert done.returncode != 0
    assert "no experiment named 'nope'" in done.stderr
    assert "Traceback" not in done.stderr
