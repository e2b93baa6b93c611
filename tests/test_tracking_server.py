"""A sweep into a shared tracking server: ``mlflow server`` on 127.0.0.1 in front of PostgreSQL
(or SQLite where PostgreSQL cannot run; the terminal summary says which), as on a cluster.

Real parts only: the session fixture ``tracking_server`` (``conftest.py``, ``servers.py``)
starts a throw-away PostgreSQL cluster and an ``mlflow server`` with proxied artifacts, both
on loopback; the sweep is a real ``python -m rprop_bench sweep`` with the joblib launcher
(two worker processes), and ``report`` reads the runs back through the server.
Marked slow; CI runs it (about a minute on 2 cores).
"""

from __future__ import annotations

import csv
import socket
import statistics
from pathlib import Path

import matplotlib.image
import pandas as pd
import pytest
from harness_helpers import run_cli, runs_of_kind
from mlflow import MlflowClient
from servers import TrackingServer, listening_addresses, machine_addresses

from rprop_bench import schema

pytestmark = pytest.mark.slow

EXPERIMENT = "server-sweep"
EPOCHS = 8
PROBLEMS = ("line", "iris")
SEEDS = (0, 1)
SWEEP = (
    "sweep", "optimizer=rprop", "problem=line,iris", "train.seed=0,1", f"train.epochs={EPOCHS}",
    "train.log_every=1", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
    f"tracking.experiment={EXPERIMENT}",
)  # fmt: skip


def _cli(cwd: Path, *args: str, timeout: float = 300):
    done = run_cli(*args, cwd=cwd, timeout=timeout)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done


@pytest.fixture(scope="module")
def swept(tracking_server: TrackingServer, tmp_path_factory) -> tuple[TrackingServer, Path, str]:
    """The sweep, run once into the server; returns the server, the working dir and stdout."""
    cwd = tmp_path_factory.mktemp("server_sweep")
    done = _cli(cwd, *SWEEP, f"tracking.uri={tracking_server.uri}")
    return tracking_server, cwd, done.stdout


def test_every_run_is_there_once_finished_and_nested_under_one_parent(swept):
    server, _, stdout = swept
    assert "runs: 4 FINISHED; parent run" in stdout
    runs = runs_of_kind(server.uri, experiment=EXPERIMENT)
    grid = {(r.data.tags[schema.TAG_PROBLEM], int(r.data.tags[schema.TAG_SEED])) for r in runs}
    assert len(runs) == 4
    assert grid == {(p, s) for p in PROBLEMS for s in SEEDS}
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert len({r.data.tags[schema.TAG_RUN_KEY] for r in runs}) == 4
    (parent,) = runs_of_kind(server.uri, schema.RUN_KIND_SWEEP, experiment=EXPERIMENT)
    assert parent.info.status == "FINISHED"
    assert {r.data.tags[schema.TAG_PARENT_RUN_ID] for r in runs} == {parent.info.run_id}
    # two joblib workers wrote them: more than one process
    assert len({r.data.tags[schema.TAG_PID] for r in runs}) == 2


def test_metric_histories_are_complete(swept):
    server, _, _ = swept
    client = MlflowClient(server.uri)
    for run in runs_of_kind(server.uri, experiment=EXPERIMENT):
        for key in (schema.TRAIN_LOSS, schema.WALL_TIME):
            history = client.get_metric_history(run.info.run_id, key)
            assert sorted(m.step for m in history) == list(range(1, EPOCHS + 1)), key
        assert schema.TEST_LOSS in run.data.metrics
        # the last logged train loss is the run's latest value of it
        last = max(
            client.get_metric_history(run.info.run_id, schema.TRAIN_LOSS), key=lambda m: m.step
        )
        assert run.data.metrics[schema.TRAIN_LOSS] == pytest.approx(last.value)


def test_artifacts_are_readable_through_the_server(swept, tmp_path):
    server, _, _ = swept
    client = MlflowClient(server.uri)
    for run in runs_of_kind(server.uri, experiment=EXPERIMENT):
        run_id, seed = run.info.run_id, run.data.tags[schema.TAG_SEED]
        where = tmp_path / run_id
        where.mkdir()
        config = Path(client.download_artifacts(run_id, schema.ARTIFACT_CONFIG, str(where)))
        text = config.read_text()
        assert f"epochs: {EPOCHS}" in text
        assert f"seed: {seed}" in text
        table = Path(client.download_artifacts(run_id, schema.ARTIFACT_STEP_HISTOGRAMS, str(where)))
        with table.open(newline="") as f:
            rows = list(csv.reader(f))
        assert tuple(rows[0]) == tuple(schema.HISTOGRAM_COLUMNS)
        assert {int(r[0]) for r in rows[1:]} == set(range(1, EPOCHS + 1))
        heatmap = Path(client.download_artifacts(run_id, schema.ARTIFACT_STEP_HEATMAP, str(where)))
        assert matplotlib.image.imread(heatmap).ndim == 3
    # proxied artifacts: the server wrote them into its own store, not the clients
    assert any(server.artifacts.rglob("heatmap.png"))


def test_the_same_sweep_again_adds_no_run(swept):
    server, cwd, _ = swept
    before = {r.info.run_id for r in runs_of_kind(server.uri, None, experiment=EXPERIMENT)}
    again = _cli(cwd, *SWEEP, f"tracking.uri={server.uri}")
    assert again.stdout.count("SKIPPED") == 4
    assert "resuming parent run" in again.stdout
    after = {r.info.run_id for r in runs_of_kind(server.uri, None, experiment=EXPERIMENT)}
    assert after == before


def test_report_against_the_server_matches_the_runs(swept):
    server, cwd, _ = swept
    out = cwd / "report"
    done = _cli(
        cwd, "report", f"experiment={EXPERIMENT}", f"tracking.uri={server.uri}",
        f"report.out={out}", "report.formats=[png]", "report.progress=false",
    )  # fmt: skip
    assert "report on 4 runs (0 failed)" in done.stdout
    assert "logged as artifacts" in done.stdout  # written back to the parent run via the server
    assert (out / "index.html").is_file()
    assert any((out / "figures").glob("line_loss_curves.png"))
    runs = runs_of_kind(server.uri, experiment=EXPERIMENT)
    for problem in PROBLEMS:
        losses = [
            r.data.metrics[schema.TEST_LOSS]
            for r in runs
            if r.data.tags[schema.TAG_PROBLEM] == problem
        ]
        table = pd.read_csv(out / "tables" / f"{problem}_final.csv")
        (row,) = table.itertuples()
        assert row.n_runs == len(SEEDS)
        assert row.test_loss_median == pytest.approx(statistics.median(losses))


def _refused(address: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        try:
            sock.connect((address, port))
        except OSError:
            return True
    return False


def test_the_servers_listen_on_loopback_only(tracking_server: TrackingServer):
    ports = [tracking_server.port]
    if tracking_server.backend_port is not None:  # PostgreSQL's
        ports.append(tracking_server.backend_port)
    for port in ports:
        assert listening_addresses(port) == {"127.0.0.1"}, port
        for address in sorted(machine_addresses()):
            assert _refused(address, port), f"port {port} answers on {address}"


def test_the_server_refuses_a_foreign_host_header(tracking_server: TrackingServer):
    """--allowed-hosts at its default: a Host header that is not local or private is refused
    (DNS rebinding); the same request with the server's own address is answered."""
    import urllib.error
    import urllib.request

    def status(host: str | None) -> int:
        request = urllib.request.Request(
            f"{tracking_server.uri}/api/2.0/mlflow/experiments/search",
            data=b'{"max_results": 1}',
            headers={"Content-Type": "application/json", **({"Host": host} if host else {})},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    assert status(None) == 200
    assert status("evil.example") == 403
