"""Real servers on loopback for the tests and benchmarks: PostgreSQL, and ``mlflow server``.

* :func:`postgres_server` starts a throw-away PostgreSQL cluster: ``initdb`` in a temp
  directory, listening on 127.0.0.1 only (its Unix socket in that directory), on a free port,
  with a role and a database for MLflow. It stops the postmaster by its own process id and
  removes the directory. PostgreSQL refuses to run as root, so as root it runs as the
  ``postgres`` system user (``runuser``).
* :func:`database_backend` chooses the backend store: PostgreSQL where it can run here, else
  an SQLite file, and says which (``"postgresql 15.18"``, ``"sqlite (PostgreSQL not
  installed)"``).
* :func:`start_tracking_server` puts an ``mlflow server`` on 127.0.0.1 in front of that
  backend, with proxied artifacts; this is what the session fixture ``tracking_server`` of
  ``conftest.py`` yields.

The environment variable ``RPROP_BENCH_TEST_BACKEND`` forces the choice: ``postgresql``
(PostgreSQL that cannot run is then an error, not a silent fall-back; what CI sets after
installing it) or ``sqlite``. ``RPROP_BENCH_PG_BIN`` names the directory of ``initdb`` and
``pg_ctl`` if they are neither on ``PATH`` nor in Debian's ``/usr/lib/postgresql/*/bin``.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from harness_helpers import free_port, mlflow_server, new_store, wait_for

BACKEND_ENV = "RPROP_BENCH_TEST_BACKEND"
PG_BIN_ENV = "RPROP_BENCH_PG_BIN"
#: The programs a throw-away cluster needs.
PG_PROGRAMS = ("initdb", "pg_ctl", "postgres", "psql")
#: The system user PostgreSQL runs as when the tests run as root (Debian's package makes it).
PG_SYSTEM_USER = "postgres"


# --- finding PostgreSQL ---------------------------------------------------------------------


def _version_key(directory: Path) -> tuple[int, ...]:
    digits = re.findall(r"\d+", directory.parent.name)
    return tuple(int(d) for d in digits) or (0,)


def postgres_bin_dir() -> Path | None:
    """The directory holding ``initdb``, ``pg_ctl``, ``postgres`` and ``psql``, if any.

    Looks at ``$RPROP_BENCH_PG_BIN``, then next to ``pg_ctl`` on ``PATH``, then Debian's
    ``/usr/lib/postgresql/<version>/bin`` (newest first; Debian does not put them on PATH).
    """
    candidates: list[Path] = []
    if os.environ.get(PG_BIN_ENV):
        candidates.append(Path(os.environ[PG_BIN_ENV]))
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    candidates.extend(debian)
    for directory in candidates:
        if all(os.access(directory / name, os.X_OK) for name in PG_PROGRAMS):
            return directory
    return None


def _as_root() -> bool:
    return os.geteuid() == 0


def postgres_unavailable() -> str | None:
    """Why a PostgreSQL cluster cannot be started here (a few words), or ``None`` if it can."""
    if postgres_bin_dir() is None:
        return "PostgreSQL not installed"
    try:
        import psycopg2  # noqa: F401  (MLflow's driver for postgresql:// stores)
    except ImportError:
        return "psycopg2 not installed"
    if _as_root():
        try:
            pwd.getpwnam(PG_SYSTEM_USER)
        except KeyError:
            return f"running as root and there is no '{PG_SYSTEM_USER}' user"
        if shutil.which("runuser") is None:
            return "running as root and runuser is missing"
    return None


def postgres_version(bin_dir: Path) -> str:
    """``"15.18"`` from ``postgres --version`` (``postgres (PostgreSQL) 15.18 (Debian ...)``)."""
    out = subprocess.run(
        [str(bin_dir / "postgres"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    found = re.search(r"\)\s*(\d+(?:\.\d+)*)", out)
    return found.group(1) if found else out.strip()


# --- a throw-away PostgreSQL cluster --------------------------------------------------------


@dataclass(frozen=True)
class Postgres:
    """A running throw-away PostgreSQL cluster (see :func:`postgres_server`).

    Attributes:
        uri: SQLAlchemy URI of the MLflow database, with its role and password,
            ``postgresql+psycopg2://mlflow:<password>@127.0.0.1:<port>/mlflow``.
        version: the server's version, e.g. ``"15.18"``.
        port: its TCP port on 127.0.0.1.
        pid: the postmaster's process id.
        data_dir: the cluster's data directory (removed at the end).
    """

    uri: str
    version: str
    port: int
    pid: int
    data_dir: Path


def _pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def stop_pid(pid: int, sig: int = signal.SIGINT, timeout: float = 30) -> None:
    """Send ``sig`` to ``pid`` and wait until it is gone; ``SIGKILL`` after ``timeout``.

    For processes that are not our children (the postmaster: ``pg_ctl`` daemonises it), so
    there is nothing to reap; SIGINT is PostgreSQL's "fast shutdown".
    """
    for signal_now, wait in ((sig, timeout), (signal.SIGKILL, 10)):
        try:
            os.kill(pid, signal_now)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _pid_alive(pid):
                return
            time.sleep(0.05)
    raise RuntimeError(f"process {pid} survived SIGKILL")


@contextmanager
def postgres_server(
    database: str = "mlflow", role: str = "mlflow", durable: bool = True
) -> Iterator[Postgres]:
    """Start a PostgreSQL cluster on 127.0.0.1 only; yield it; stop it by its pid; remove it.

    ``initdb`` runs in a new temp directory (host connections need the role's password,
    SCRAM; the Unix socket, in that directory, is open to its owner only). The cluster gets a
    role ``role`` with a random password and a database ``database`` it owns, as
    ``docs/tracking-server.md`` does by hand. ``durable=False`` turns off ``fsync`` and
    synchronous commits (faster, for tests that do not measure the database).

    Raises:
        RuntimeError: PostgreSQL cannot run here (:func:`postgres_unavailable` says why) or
            failed to start (with the end of its log).
    """
    reason = postgres_unavailable()
    if reason:
        raise RuntimeError(f"cannot start PostgreSQL: {reason}")
    bin_dir = postgres_bin_dir()
    assert bin_dir is not None
    base = Path(tempfile.mkdtemp(prefix="rprop_bench_pg_"))
    prefix: list[str] = []
    if _as_root():  # PostgreSQL refuses root: run it as the postgres user, in a dir it owns
        user = pwd.getpwnam(PG_SYSTEM_USER)
        os.chown(base, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", PG_SYSTEM_USER, "--"]
    data, log, port = base / "data", base / "postgres.log", free_port()
    secret = secrets.token_hex(16)

    def run(*command: str) -> None:
        done = subprocess.run(
            [*prefix, *command], capture_output=True, text=True, cwd=base, check=False
        )
        if done.returncode != 0:
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{command[0]} failed: {done.stderr.strip()[-2000:]}\n{tail}")

    options = [
        "-c listen_addresses=127.0.0.1", f"-c port={port}", f"-c unix_socket_directories={base}",
        *([] if durable else ["-c fsync=off", "-c synchronous_commit=off"]),
    ]  # fmt: skip
    pid = None
    try:
        run(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth-local=trust",
            "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync")  # fmt: skip
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "120",
            "-o", " ".join(options), "start")  # fmt: skip
        pid = int((data / "postmaster.pid").read_text().split()[0])
        run(str(bin_dir / "psql"), "-h", str(base), "-p", str(port), "-U", "postgres",
            "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-q",
            "-c", f"CREATE ROLE {role} LOGIN PASSWORD '{secret}'",
            "-c", f"CREATE DATABASE {database} OWNER {role}")  # fmt: skip
        # the driver named: SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, not psycopg2
        uri = f"postgresql+psycopg2://{role}:{secret}@127.0.0.1:{port}/{database}"
        yield Postgres(uri, postgres_version(bin_dir), port, pid, data)
    finally:
        if pid is None and (data / "postmaster.pid").exists():  # started, then psql failed
            pid = int((data / "postmaster.pid").read_text().split()[0])
        if pid is not None:
            stop_pid(pid)
        shutil.rmtree(base, ignore_errors=True)


# --- the backend store, and an mlflow server in front of it ---------------------------------


@dataclass(frozen=True)
class Backend:
    """A backend store for MLflow: its SQLAlchemy ``uri`` and a ``name`` for logs.

    ``name`` is ``"postgresql 15.18"`` or ``"sqlite (<why not PostgreSQL>)"``; ``kind`` is
    ``"postgresql"`` or ``"sqlite"``; ``pid`` and ``port`` are PostgreSQL's (``None`` for SQLite).
    """

    uri: str
    name: str
    kind: str
    pid: int | None = None
    port: int | None = None


def backend_choice() -> tuple[str, str | None]:
    """``(kind, why)``: ``("postgresql", None)`` or ``("sqlite", why not PostgreSQL)``.

    Honours ``$RPROP_BENCH_TEST_BACKEND``; ``postgresql`` there makes a PostgreSQL that cannot
    run an error.
    """
    forced = os.environ.get(BACKEND_ENV, "").strip().lower()
    if forced not in ("", "postgresql", "sqlite"):
        raise ValueError(f"{BACKEND_ENV}={forced!r}; valid: postgresql, sqlite (or unset)")
    if forced == "sqlite":
        return "sqlite", f"{BACKEND_ENV}=sqlite"
    reason = postgres_unavailable()
    if reason and forced == "postgresql":
        raise RuntimeError(f"{BACKEND_ENV}=postgresql but {reason}")
    return ("sqlite", reason) if reason else ("postgresql", None)


@contextmanager
def database_backend(
    directory: Path, kind: str | None = None, durable: bool = True
) -> Iterator[Backend]:
    """The backend store to put an ``mlflow server`` in front of; stopped at the end.

    ``kind`` ``None`` chooses with :func:`backend_choice`; ``"postgresql"`` or ``"sqlite"``
    asks for one (the benchmark measures both). SQLite lives in ``directory/backend``.
    """
    why = None
    if kind is None:
        kind, why = backend_choice()
    if kind == "postgresql":
        with postgres_server(durable=durable) as pg:
            yield Backend(pg.uri, f"postgresql {pg.version}", "postgresql", pg.pid, pg.port)
    elif kind == "sqlite":
        name = f"sqlite ({why})" if why else "sqlite"
        yield Backend(new_store(directory / "backend"), name, "sqlite")
    else:
        raise ValueError(f"unknown backend {kind!r}; valid: postgresql, sqlite")


@dataclass(frozen=True)
class TrackingServer:
    """A running ``mlflow server`` on 127.0.0.1 and the backend behind it.

    Attributes:
        uri: the tracking URI, ``http://127.0.0.1:<port>`` (pass ``tracking.uri=<uri>``).
        backend: what stores the runs, for logs: ``"postgresql 15.18"`` or ``"sqlite (...)"``.
        backend_kind: ``"postgresql"`` or ``"sqlite"``.
        backend_uri: the backend store's SQLAlchemy URI.
        artifacts: the directory the server stores artifacts in (``--artifacts-destination``).
        pid: the server's process id (it leads its own process group).
        port: the server's port.
        backend_pid, backend_port: PostgreSQL's postmaster pid and port (``None`` for SQLite).
    """

    uri: str
    backend: str
    backend_kind: str
    backend_uri: str
    artifacts: Path
    pid: int
    port: int
    backend_pid: int | None = None
    backend_port: int | None = None


@contextmanager
def start_tracking_server(
    directory: Path, kind: str | None = None, workers: int = 1, durable: bool = True
) -> Iterator[TrackingServer]:
    """An ``mlflow server`` on 127.0.0.1 in front of :func:`database_backend`; both stopped
    by their own process ids at the end.

    Artifacts are proxied by the server (``--artifacts-destination directory/artifacts``), so
    clients never write the artifact store themselves, as on a cluster.
    """
    directory.mkdir(parents=True, exist_ok=True)
    with (
        database_backend(directory, kind, durable) as backend,
        mlflow_server(directory, backend_uri=backend.uri, workers=workers) as (uri, process),
    ):
        port = int(uri.rsplit(":", 1)[1])
        yield TrackingServer(
            uri, backend.name, backend.kind, backend.uri, directory / "artifacts",
            process.pid, port, backend.pid, backend.port,
        )  # fmt: skip


# --- what listens where ---------------------------------------------------------------------


def _decode_address(hex_address: str) -> str:
    """``/proc/net/tcp`` notation to text: ``0100007F`` → ``127.0.0.1`` (IPv6 likewise)."""
    import ipaddress

    raw = bytes.fromhex(hex_address)
    # the kernel prints each 32-bit word in host (little-endian) order
    fixed = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(fixed))


def listening_addresses(port: int) -> set[str]:
    """The local addresses on which a TCP socket listens on ``port`` (IPv4 and IPv6), from
    ``/proc/net/tcp`` and ``/proc/net/tcp6``."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if fields[3] == "0A" and int(hex_port, 16) == port:  # 0A: TCP_LISTEN
                found.add(_decode_address(address))
    return found


def machine_addresses() -> set[str]:
    """This machine's own non-loopback IP addresses (from ``/proc/net/fib_trie`` and
    ``/proc/net/if_inet6``)."""
    import ipaddress

    found: set[str] = set()
    with_next = None
    try:
        for line in Path("/proc/net/fib_trie").read_text().splitlines():
            text = line.strip()
            if text.startswith("|--"):
                with_next = text[3:].strip()
            elif text == "/32 host LOCAL" and with_next:
                found.add(with_next)
    except OSError:
        pass
    try:
        for line in Path("/proc/net/if_inet6").read_text().splitlines():
            hex_address, *_ = line.split()
            address = ipaddress.ip_address(bytes.fromhex(hex_address))
            if not address.is_link_local:  # fe80:: needs a scope id to connect to
                found.add(str(address))
    except OSError:
        pass
    return {a for a in found if not ipaddress.ip_address(a).is_loopback}


def wait_until_gone(pid: int, timeout: float = 30) -> None:
    """Wait until process ``pid`` has ended (or is a zombie)."""
    wait_for(lambda: not _pid_alive(pid), timeout, f"process {pid} to end")
