"""Sweeps through Hydra launchers beyond joblib: Ray and submitit (docs/launchers.md).

Real parts only: the real CLI in subprocesses, real Hydra composition, a real Ray cluster on
this machine (``ray start --head`` started and stopped by its process id here, or started on
the spot by the launcher's ``ray.init``), real submitit local jobs, and the session's real
``mlflow server`` on 127.0.0.1 (``tracking_server`` in conftest.py) as the store. The
end-to-end sweeps are marked slow; the checks of bad input run in a few seconds.

Ray's gRPC servers listen on every interface whatever ``--node-ip-address`` says (Ray has no
setting for it), and every server a test starts must listen on 127.0.0.1 only. So the Ray
tests (marker ``ray_cluster``) run in a network namespace of their own whose one interface is
loopback (``unshare --net``, as root): :func:`test_ray_sweeps_in_a_loopback_only_network`
runs them there, in a pytest of their own with its own tracking server, and the outer session
skips them. Where no namespace can be made, they run here instead, with Ray's token
authentication on, and that wrapper test is skipped saying why.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pytest
from harness_helpers import free_port, run_cli, runs_of_kind, wait_for
from mlflow import MlflowClient
from servers import listening_addresses, machine_addresses

from rprop_bench import schema
from rprop_bench.cli.callbacks import MAX_RUN_NAME, parent_run_name
from rprop_bench.cli.compose import compose_config, preflight
from rprop_bench.cli.identity import SWEEP_ID_ENV, SWEEP_SIZE_ENV, run_key
from rprop_bench.cli.launchers import LAUNCHERS, job_environment, launcher_overrides
from rprop_bench.cli.seed_groups import PLAN_ENV

VALID = "basic, joblib, ray, submitit_local, submitit_slurm"
EPOCHS = 20
#: A tiny grid: 2 problems × 2 seeds, every epoch logged, no early stop (full histories).
GRID = (
    "sweep", "optimizer=rprop", "problem=line,iris", "train.seed=0,1", f"train.epochs={EPOCHS}",
    "train.log_every=1", "train.histogram_every=5", "train.target_loss=null",
)  # fmt: skip
#: Ray on the spot, small: 2 CPUs, no dashboard (it only slows the start here).
RAY_SMALL = (
    "++hydra.launcher.ray.init.num_cpus=2",
    "++hydra.launcher.ray.init.include_dashboard=false",
)


# --- bad input: one line, exit 2, before anything runs ---------------------------------------


def _hidden_cli(hidden: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real CLI in a subprocess in which module ``hidden`` cannot be imported, as when the
    extra that installs it is missing (``sys.modules[name] = None`` makes ``import`` fail)."""
    code = (
        f"import runpy, sys; sys.modules[{hidden!r}] = None; "
        "runpy.run_module('rprop_bench', run_name='__main__', alter_sys=True)"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _assert_one_error_line(out: subprocess.CompletedProcess[str], message: str, cwd: Path):
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.strip().splitlines() == [message]
    assert out.stdout == ""
    assert list(cwd.iterdir()) == []  # no store, no outputs: nothing ran


@pytest.mark.parametrize(
    ("launcher", "hidden", "message"),
    [
        ("ray", "hydra_plugins.hydra_ray_launcher",
         "error: hydra/launcher=ray needs the Ray launcher (hydra_plugins.hydra_ray_launcher "
         "is not installed): pip install 'rprop-bench[ray]'"),
        ("ray", "ray",
         "error: hydra/launcher=ray needs the Ray launcher (ray is not installed): "
         "pip install 'rprop-bench[ray]'"),
        ("submitit_local", "submitit",
         "error: hydra/launcher=submitit_local needs the submitit launcher (submitit is not "
         "installed): pip install 'rprop-bench[slurm]'"),
        ("submitit_slurm", "hydra_plugins.hydra_submitit_launcher",
         "error: hydra/launcher=submitit_slurm needs the submitit launcher "
         "(hydra_plugins.hydra_submitit_launcher is not installed): "
         "pip install 'rprop-bench[slurm]'"),
    ],
)  # fmt: skip
@pytest.mark.slow  # needs the launcher extras (the full lane's install)
def test_a_missing_extra_is_one_line_naming_it(tmp_path, launcher, hidden, message):
    out = _hidden_cli(hidden, "sweep", "problem=line", f"hydra/launcher={launcher}", cwd=tmp_path)
    _assert_one_error_line(out, message, tmp_path)


@pytest.mark.parametrize("command", ["sweep", "run"])
def test_an_unknown_launcher_lists_the_valid_ones(tmp_path, command):
    out = run_cli(command, "problem=line", "hydra/launcher=dask", cwd=tmp_path)
    _assert_one_error_line(
        out, f"error: unknown launcher 'dask'; valid launchers: {VALID}", tmp_path
    )
    assert ", ".join(LAUNCHERS) == VALID


@pytest.mark.slow  # needs the launcher extras (the full lane's install)
def test_a_typo_in_a_launcher_setting_is_one_line(tmp_path):
    out = run_cli(
        "sweep", "problem=line", "hydra/launcher=submitit_slurm", "hydra.launcher.partiton=gpu",
        cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 2
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("error: invalid configuration: ")
    assert "hydra.launcher.partiton" in line
    assert list(tmp_path.iterdir()) == []


# --- what the CLI adds to Hydra's config (real composition) -----------------------------------


SLURM = (
    "hydra/launcher=submitit_slurm", "hydra.launcher.partition=debug",
    "hydra.launcher.timeout_min=30", "hydra.launcher.cpus_per_task=2", "hydra.launcher.mem_gb=4",
)  # fmt: skip


@pytest.mark.slow  # needs the launcher extras (the full lane's install)
def test_slurm_settings_compose_and_every_job_passes_the_preflight():
    jobs, configs = preflight(["problem=line", "train.seed=0,1,2", *SLURM], sweep=True)
    assert [int(c.train.seed) for c in configs] == [0, 1, 2]
    assert all(set(SLURM) <= set(job) for job in jobs)
    hydra = compose_config(["problem=line", *SLURM], with_hydra=True).hydra
    assert hydra.launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    launcher = hydra.launcher
    assert (launcher.partition, launcher.timeout_min, launcher.cpus_per_task, launcher.mem_gb) == (
        "debug", 30, 2, 4,
    )  # fmt: skip
    # the launcher is not part of what a run computes: the same keys as without it
    assert [run_key(c) for c in configs] == [
        run_key(c) for c in preflight(["problem=line", "train.seed=0,1,2"], sweep=True)[1]
    ]


@pytest.mark.parametrize(
    ("extra", "address", "memory"),
    [
        ((), None, None),  # the plugin's setdefault finds the key; Ray sizes the store itself
        (("hydra.launcher.ray.init.address=127.0.0.1:6379",), "127.0.0.1:6379", None),
        (("++hydra.launcher.ray.init.object_store_memory=100000000",), None, 100000000),
    ],
)
@pytest.mark.slow  # needs the launcher extras (the full lane's install)
def test_the_ray_launcher_config_declares_the_object_store_size(extra, address, memory):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = ["problem=line", "hydra/launcher=ray", *extra]
    parsed = OverridesParser.create().parse_overrides(overrides)
    added = launcher_overrides(LAUNCHERS["ray"], parsed)
    init = compose_config([*overrides, *added], with_hydra=True).hydra.launcher.ray.init
    assert "object_store_memory" in init
    assert (init.address, init.object_store_memory) == (address, memory)


def test_the_sweep_reaches_every_job_through_its_hydra_config():
    env = {SWEEP_ID_ENV: "sweep_0123456789ab", SWEEP_SIZE_ENV: "30", PLAN_ENV: "/tmp/x/plan.json"}
    cfg = compose_config(["problem=iris", *job_environment(env)], with_hydra=True)
    assert dict(cfg.hydra.job.env_set) == env  # text, as Hydra sets them in the job's process
    with_env = compose_config(["problem=iris", *job_environment(env)])
    assert run_key(with_env) == run_key(compose_config(["problem=iris"]))  # keys unchanged


@pytest.mark.parametrize("length", [10, 300])
def test_the_parent_run_name_fits_a_sql_store(length):
    """PostgreSQL refuses run names over 250 characters (runs.name is VARCHAR(250)); a long
    command line once left a sweep without its parent run there."""
    shown = "x" * length
    name = parent_run_name(shown, Path("multirun/2026-11-24/20-27-21-744484"))
    assert len(name) <= MAX_RUN_NAME
    assert name.startswith("sweep · xxxxxxxxxx")
    assert name.endswith(" · 2026-11-24 20-27-21-744484")
    assert (shown in name) == (length == 10)


# --- end to end: sweeps into the shared tracking server ---------------------------------------


def _steps(uri: str, run_id: str) -> list[int]:
    return sorted(m.step for m in MlflowClient(uri).get_metric_history(run_id, schema.TRAIN_LOSS))


def _artifacts(uri: str, run_id: str) -> set[str]:
    client = MlflowClient(uri)
    found: set[str] = set()
    pending = [None]
    while pending:
        for item in client.list_artifacts(run_id, pending.pop()):
            (pending.append(item.path) if item.is_dir else found.add(item.path))
    return found


def _assert_complete_sweep(uri: str, experiment: str, expected: int) -> list:
    """Every run present once, FINISHED, nested under the one parent, with full metric
    histories and its artifacts; returns the runs."""
    runs = runs_of_kind(uri, experiment=experiment)
    assert len(runs) == expected
    keys = Counter(r.data.tags[schema.TAG_RUN_KEY] for r in runs)
    assert set(keys.values()) == {1}
    assert {r.info.status for r in runs} == {"FINISHED"}
    (parent,) = runs_of_kind(uri, schema.RUN_KIND_SWEEP, experiment=experiment)
    assert parent.info.status == "FINISHED"
    assert {r.data.tags[schema.TAG_PARENT_RUN_ID] for r in runs} == {parent.info.run_id}
    assert {r.data.tags[schema.TAG_SWEEP_ID] for r in runs} == {
        parent.data.tags[schema.TAG_SWEEP_ID]
    }
    for run in runs:
        assert _steps(uri, run.info.run_id) == list(range(1, EPOCHS + 1))
        wanted = {
            schema.ARTIFACT_CONFIG,
            schema.ARTIFACT_STEP_HISTOGRAMS,
            schema.ARTIFACT_STEP_HEATMAP,
        }
        if run.data.tags[schema.TAG_PROBLEM] == "line":
            wanted.add(schema.ARTIFACT_LINE_DATA)
        assert wanted <= _artifacts(uri, run.info.run_id)
    return runs


def _ray_env(token: str) -> dict[str, str]:
    """Ray's token authentication with a token of this test's own (nothing in ~/.ray)."""
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "RAY_ADDRESS": ""}


def _processes_mentioning(text: str) -> list[int]:
    """The ids of live processes whose command line contains ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with suppress(OSError):
            if text in (entry / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(entry.name))
    return found


#: Set inside the loopback-only network namespace that the Ray tests run in.
IN_LOOPBACK_NETNS = "RPROP_BENCH_LOOPBACK_NETNS"


def _loopback_netns_prefix() -> tuple[list[str] | None, str]:
    """The command prefix that runs a command in a new network namespace with loopback up,
    or ``None`` and why not (only root may make one here; ``unshare`` and ``ip`` are needed)."""
    unshare, ip = shutil.which("unshare"), shutil.which("ip")
    if os.geteuid() != 0 or unshare is None or ip is None:
        return None, "needs root, unshare and ip"
    prefix = [unshare, "--net", "--", "sh", "-c", f'"{ip}" link set lo up && exec "$0" "$@"']
    probe = subprocess.run([*prefix, "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return None, f"unshare --net failed: {probe.stderr.strip()[-200:]}"
    return prefix, ""


NETNS_PREFIX, NO_NETNS = _loopback_netns_prefix()
#: The Ray tests: inside the namespace when one can be made (see the module docstring).
ray_cluster_test = pytest.mark.skipif(
    NETNS_PREFIX is not None and os.environ.get(IN_LOOPBACK_NETNS) != "1",
    reason="runs inside a loopback-only network namespace (test_ray_sweeps_in_a_loopback_only_"
    "network)",
)


@pytest.mark.slow
@pytest.mark.skipif(
    NETNS_PREFIX is None,
    reason=f"no network namespace here ({NO_NETNS}): "
    "the Ray tests ran in this one, where Ray listens on all interfaces",
)
@pytest.mark.skipif(os.environ.get(IN_LOOPBACK_NETNS) == "1", reason="already inside it")
def test_ray_sweeps_in_a_loopback_only_network(tmp_path):
    """The Ray tests, in a pytest of their own in a network namespace whose only interface is
    loopback: whatever Ray binds, nothing outside this machine's loopback can reach it."""
    assert NETNS_PREFIX is not None
    inside = subprocess.run(
        [*NETNS_PREFIX, sys.executable, "-m", "pytest", __file__, "-m", "ray_cluster", "-q",
         "-p", "no:cacheprovider", "-rA", f"--basetemp={tmp_path / 'inner'}"],
        env={**os.environ, IN_LOOPBACK_NETNS: "1"}, capture_output=True, text=True,
        timeout=900, check=False,
    )  # fmt: skip
    report = inside.stdout[-4000:] + inside.stderr[-2000:]
    assert inside.returncode == 0, report
    assert re.search(r"\b3 passed\b", inside.stdout), (
        report
    )  # 2 Ray sweeps + the inside check, none skipped
    print(report[-1500:])  # which backend the inner tracking server used, and the timings


@pytest.mark.ray_cluster  # runs outside and inside: checks both ways
def test_the_namespace_the_ray_tests_run_in_has_loopback_only():
    """Inside the namespace (when the Ray tests run there) this machine has no address but
    loopback, so servers bound to 0.0.0.0 there are reachable on 127.0.0.1 only."""
    if os.environ.get(IN_LOOPBACK_NETNS) != "1":
        if NETNS_PREFIX is None:
            pytest.skip(f"no network namespace here ({NO_NETNS})")
        inside = subprocess.run(
            [*NETNS_PREFIX, sys.executable, "-c",
             "import sys; sys.path.insert(0, 'tests'); from servers import machine_addresses; "
             "print(sorted(machine_addresses()))"],
            capture_output=True, text=True, cwd=Path(__file__).parents[1], check=True,
        )  # fmt: skip
        assert inside.stdout.strip() == "[]"
    else:
        assert machine_addresses() == set()


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[tuple[str, dict[str, str], str]]:
    """A Ray head node on this machine (``ray start --head --block``), its GCS on 127.0.0.1.

    Yields its address, the environment that reaches it (its auth token) and its temp dir.
    It is stopped by its own process id (``--block``: SIGTERM stops the node's processes) and,
    should any be left, its own process group.
    """
    ray = Path(sys.executable).with_name("ray")
    if not ray.exists():
        ray = Path(shutil.which("ray") or "ray")
    temp = tempfile.mkdtemp(prefix="rb_ray_")  # short: Ray's socket paths must stay < 108 bytes
    env = _ray_env(secrets.token_hex(32))
    port = free_port()
    process = subprocess.Popen(
        [
            str(ray), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
            f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
            f"--temp-dir={temp}", "--disable-usage-stats",
        ],
        env={**os.environ, **env},
        cwd=temp,  # the jobs' Hydra output dirs are relative to the workers' cwd, the node's
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        wait_for(lambda: process.poll() is None and listening_addresses(port), 120, "ray head")
        yield f"127.0.0.1:{port}", env, temp
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # anything of the node's left behind
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.ray_cluster
@ray_cluster_test
def test_a_sweep_on_an_existing_ray_cluster(tmp_path, tracking_server, ray_cluster):
    address, env, temp = ray_cluster
    uri, experiment = tracking_server.uri, "launchers-ray-cluster"
    out = run_cli(
        *GRID, "train.vectorize_seeds=true", "hydra/launcher=ray",
        f"hydra.launcher.ray.init.address={address}", f"tracking.uri={uri}",
        f"tracking.experiment={experiment}", cwd=tmp_path, env=env, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "runs: 4 FINISHED; parent run" in out.stdout
    # The cluster started before this sweep: its workers never saw the CLI's environment, so
    # that the runs share the one parent proves the sweep id came with each job's config.
    runs = _assert_complete_sweep(uri, experiment, 4)
    # The seed plan is a file on this machine: on a cluster every run trains one by one.
    assert (
        "train.vectorize_seeds: 4 runs train one by one: hydra/launcher=ray runs jobs on other "
        "machines, which cannot share the sweep's seed groups"
    ) in out.stdout
    assert all(schema.TAG_VECTORIZED not in r.data.tags for r in runs)
    assert _processes_mentioning(temp)  # the cluster outlives the sweep; the fixture stops it
    # the jobs wrote their Hydra output dirs in the nodes' working dir, not the CLI's
    assert len(list(Path(temp).glob("multirun/*/*/*/.hydra/config.yaml"))) == 4


@pytest.mark.slow
def test_a_sweep_through_submitit_local_with_seed_groups(tmp_path, tracking_server):
    uri, experiment = tracking_server.uri, "launchers-submitit"
    out = run_cli(
        *GRID, "train.vectorize_seeds=true", "hydra/launcher=submitit_local",
        f"tracking.uri={uri}", f"tracking.experiment={experiment}", cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "runs: 4 FINISHED; parent run" in out.stdout
    runs = _assert_complete_sweep(uri, experiment, 4)
    # submitit_local runs the jobs on this machine: the seed plan reaches them and each
    # problem's two seeds train as one stacked model (by whichever job took the group's lock)
    assert {r.data.tags.get(schema.TAG_VECTORIZED) for r in runs} == {"2"}
    logs = "".join(p.read_text() for p in tmp_path.glob("multirun/*/*/.submitit/*/*_log.out"))
    assert len(re.findall(r"SKIPPED .*trained with its seed group in this sweep", logs)) == 2


@pytest.mark.slow
@pytest.mark.ray_cluster
@ray_cluster_test
def test_a_sweep_resumes_across_launchers(tmp_path, tracking_server):
    """Hydra's basic launcher first (in this process: the cheapest); one run then marked KILLED;
    the same sweep through Ray started on the spot redoes that run only, under the same parent."""
    uri, experiment = tracking_server.uri, "launchers-resume"
    args = (*GRID[:2], "problem=line", "train.seed=0,1", *GRID[4:])
    first = run_cli(
        *args, "hydra/launcher=basic", f"tracking.uri={uri}",
        f"tracking.experiment={experiment}", cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr[-3000:]
    (parent,) = runs_of_kind(uri, schema.RUN_KIND_SWEEP, experiment=experiment)
    runs = runs_of_kind(uri, experiment=experiment)
    killed = next(r for r in runs if r.data.tags[schema.TAG_SEED] == "1")
    MlflowClient(uri).set_terminated(killed.info.run_id, "KILLED")

    temp = tempfile.mkdtemp(prefix="rb_ray_")
    try:
        second = run_cli(
            *args, "hydra/launcher=ray", *RAY_SMALL, f"++hydra.launcher.ray.init._temp_dir={temp}",
            f"tracking.uri={uri}", f"tracking.experiment={experiment}", cwd=tmp_path,
            env=_ray_env(secrets.token_hex(32)), timeout=300,
        )  # fmt: skip
        assert _processes_mentioning(temp) == []  # the Ray started on the spot was shut down
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"resuming parent run {parent.info.run_id}" in second.stdout
    assert "runs: 2 FINISHED, 1 KILLED; parent run" in second.stdout
    runs = runs_of_kind(uri, experiment=experiment)
    assert sorted(r.info.status for r in runs) == ["FINISHED", "FINISHED", "KILLED"]
    finished = [r for r in runs if r.info.status == "FINISHED"]
    assert Counter(r.data.tags[schema.TAG_SEED] for r in finished) == {"0": 1, "1": 1}
    assert {r.data.tags[schema.TAG_PARENT_RUN_ID] for r in runs} == {parent.info.run_id}
    (again,) = runs_of_kind(uri, schema.RUN_KIND_SWEEP, experiment=experiment)
    assert (again.info.run_id, again.info.status) == (parent.info.run_id, "FINISHED")
    new = next(r for r in finished if r.data.tags[schema.TAG_SEED] == "1")
    assert new.info.run_id != killed.info.run_id
    assert _steps(uri, new.info.run_id) == list(range(1, EPOCHS + 1))
