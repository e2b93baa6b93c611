"""``python -m rprop_bench ui``: the MLflow UI against the runs' store.

It binds to 127.0.0.1 (``tracking.ui_host``) unless told otherwise: the UI has no login, and
run names, params and tags from a shared store should not be served to the network by default.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from rprop_bench.cli.compose import compose_config
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


def serve(overrides: list[str]) -> int:
    """Start the MLflow UI for the store that ``tracking.uri`` (or the environment) names.

    For a tracking server, the server is the UI: its address is printed. Returns the UI
    process's exit status.

    Raises:
        ConfigError: a bad override, no store at the path, or the port is taken.
    """
    from rprop_bench.store import resolve_uri, sqlite_path

    try:
        cfg = compose_config(overrides)
    except Exception as exc:
        raise ConfigError(f"invalid configuration: {str(exc).splitlines()[0]}") from exc
    uri = resolve_uri(str(cfg.tracking.uri), Path.cwd())
    if uri.startswith(("http://", "https://")):
        print(f"the runs are on the tracking server: open {uri} in a browser")
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
    print(f"MLflow UI: http://{host}:{port}  (store: {uri}); press Ctrl-C to stop", flush=True)
    try:
        return subprocess.call(ui_command(uri, port, host))
    except KeyboardInterrupt:
        return 0
