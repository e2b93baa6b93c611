"""``python -m rprop_bench ui``: the MLflow UI against the runs' store.

It binds to 127.0.0.1 (``tracking.ui_host``) unless told otherwise: the UI has no login, and
run names, params and tags from a shared store should not be served to the network by default.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from rprop_bench.cli.compose import check_jobs
from rprop_bench.cli.validate import ConfigError


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def ui_command(uri: str, port: int, host: str = "127.0.0.1") -> list[str]:
    """The ``mlflow ui`` command line serving ``uri`` on ``host``:``port``."""
    return [
        sys.executable, "-m", "mlflow", "ui",
        "--backend-store-uri", uri, "--host", host, "--port", str(port),
    ]  # fmt: skip


def wait_until_ready(
    process: subprocess.Popen, url: str, timeout: float = 600.0, interval: float = 0.5
) -> bool:
    """Poll ``url``'s ``/health`` until the server answers 200 (``True``), or until
    ``process`` exits or ``timeout`` seconds pass (``False``).

    Why: under load MLflow's UI takes minutes to start, and an address printed before it
    answers only gets "connection refused"."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(interval)
    return False


#: MLflow 3.17's UI picks its view by this URL parameter (or the user's last choice), not by
#: the experiment's ``mlflow.experimentKind`` tag, which earlier 3.x versions read: without it
#: the page opens as a GenAI dashboard of traces, with the runs under "Evaluation runs".
TRAINING_VIEW = "?workflowType=machine_learning"


def experiment_url(url: str, uri: str, experiment: str) -> str:
    """The UI's page of ``experiment``'s runs in the model-training view (the UI's home page
    in that view if the store has no such experiment yet)."""
    from mlflow import MlflowClient

    try:
        found = MlflowClient(uri).get_experiment_by_name(experiment)
    except Exception:  # the store is the server's to open; the address still helps
        found = None
    page = f"experiments/{found.experiment_id}" if found is not None else ""
    return f"{url}/#/{page}{TRAINING_VIEW}"


def serve(overrides: list[str]) -> int:
    """Start the MLflow UI for the store that ``tracking.uri`` (or the environment) names.

    For a tracking server, the server is the UI: its address is printed. Returns the UI
    process's exit status.

    Raises:
        ConfigError: a bad override, no store at the path, or the port is taken.
    """
    from rprop_bench.store import resolve_uri, sqlite_path

    cfg = check_jobs([overrides])[0]  # typed and range-checked: tracking.ui_port=abc is a line
    uri = resolve_uri(str(cfg.tracking.uri), Path.cwd())
    if uri.startswith(("http://", "https://")):
        print(f"the runs are on the tracking server: open {uri}/#/{TRAINING_VIEW} in a browser")
        return 0
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        raise ConfigError(f"no MLflow store at {db}; run `python -m rprop_bench` first")
    if db is not None:  # a first start cut short is repaired before the server opens it
        from rprop_bench.first_start import open_store
        from rprop_bench.store import TrackingError

        try:
            note = open_store(uri, check_schema=True)
        except TrackingError as exc:
            raise ConfigError(str(exc)) from exc
        if note:
            print(f"store: {note}", flush=True)
    host, port = str(cfg.tracking.ui_host), int(cfg.tracking.ui_port)
    if not _port_free(host, port):
        raise ConfigError(
            f"port {port} on {host} is in use; choose another with tracking.ui_port=N"
        )
    url = f"http://{host}:{port}"
    print(f"starting the MLflow UI for {uri} ...", flush=True)
    process = subprocess.Popen(ui_command(uri, port, host))
    try:
        if wait_until_ready(process, url):
            page = experiment_url(url, uri, str(cfg.tracking.experiment))
            print(f"MLflow UI: {page}  (store: {uri}); press Ctrl-C to stop", flush=True)
        elif process.poll() is None:
            print(f"the MLflow UI has not answered at {url} yet; it keeps starting", flush=True)
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        return 0
