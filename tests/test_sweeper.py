"""The preflighted sweeper (``hydra_plugins/rprop_bench_sweeper``) against Hydra's own loader.

:class:`CachingConfigLoader` must hand every job exactly the config that Hydra's
``ConfigLoaderImpl.load_sweep_config`` composes for it (the ``hydra`` node included), while
composing once per set of config files; it must survive pickling into joblib workers; and a
sweep through the CLI must use it and record the same runs as Hydra's basic sweeper.
"""

from __future__ import annotations

import gc
import importlib
import os
import pickle
from pathlib import Path

import joblib
import pytest
from harness_helpers import new_store, runs_of_kind, start_cli
from hydra import version
from hydra._internal.callbacks import Callbacks
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.utils import create_config_search_path
from hydra.core.plugins import Plugins
from hydra.core.singleton import Singleton
from hydra.core.utils import setup_globals
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, RunMode
from joblib.externals.loky import get_reusable_executor
from lanes import fast_first
from omegaconf import DictConfig, OmegaConf

from rprop_bench import schema
from rprop_bench.cli.compose import CONF_DIR, CONFIG_NAME, GROUPS

Plugins.instance()  # registers Hydra's launcher/sweeper configs, and ours, in the ConfigStore
from hydra_plugins.rprop_bench_sweeper._caching_loader import CachingConfigLoader  # noqa: E402

#: The command line of the sweep whose jobs are composed (its hydra.* override is prepended
#: to every job by Hydra, so one is here on purpose).
MASTER = ["optimizer=rprop", "sweep=default", "hydra.sweep.dir=multirun/test"]

#: Jobs, as Hydra's launcher receives them (grid values, then the command line's overrides).
JOBS = {
    "group choices": ["optimizer=adam", "problem=iris", "model=mlp", "train.seed=0"],
    "plain values": ["problem=wine", "train.seed=3", "optimizer.lr=0.01"],
    "new key": ["problem=iris", "+new.key=1"],
    "forced value": ["problem=iris", "++train.epochs=7"],
    "value then forced value": ["train.epochs=5", "++train.epochs=7"],  # Hydra's order: 7
    "forced value then value": ["++train.epochs=7", "train.epochs=5"],  # Hydra's order: 5
    "deleted key": ["problem=moons", "~optimizer.maximize"],  # train is a schema: no deletes
    "hydra override": ["problem=iris", "hydra.job.chdir=true", "train.seed=2"],
    "quoted values": ["problem=iris", "train.target_loss='0.5'", 'tracking.experiment="a b"'],
    "list value": ["problem=iris", "optimizer.etas=[0.4,1.3]"],
    "null value": ["problem=iris", "train.target_loss=null"],
}


@pytest.fixture(scope="module")
def hydra_loader() -> ConfigLoaderImpl:
    """Hydra's own config loader for ``conf/``, as ``hydra.main`` builds it."""
    return ConfigLoaderImpl(config_search_path=create_config_search_path(str(CONF_DIR)))


@pytest.fixture(scope="module")
def master(hydra_loader) -> DictConfig:
    """The multirun's master config, as Hydra composes it before sweeping."""
    return hydra_loader.load_configuration(CONFIG_NAME, MASTER, run_mode=RunMode.MULTIRUN)


def _plain(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=False)


@pytest.mark.parametrize("job", fast_first(list(JOBS.values()), keep=3), ids=JOBS.keys())
def test_a_job_config_is_the_one_hydra_composes(hydra_loader, master, job):
    expected = hydra_loader.load_sweep_config(master, job)
    got = CachingConfigLoader(hydra_loader, GROUPS).load_sweep_config(master, job)
    assert _plain(got) == _plain(expected)
    # the parts of the hydra node that the cached path rebuilds, spelled out
    for key in ("overrides.task", "overrides.hydra", "job.override_dirname", "runtime.choices"):
        assert OmegaConf.select(got.hydra, key) == OmegaConf.select(expected.hydra, key), key
    assert OmegaConf.is_struct(got) == OmegaConf.is_struct(expected)


def test_jobs_share_one_composition_without_sharing_values(hydra_loader, master, monkeypatch):
    loader = CachingConfigLoader(hydra_loader, GROUPS)
    compositions = []
    compose = hydra_loader.load_sweep_config

    def counted(master_config, overrides):
        compositions.append(list(overrides))
        return compose(master_config, overrides)

    monkeypatch.setattr(hydra_loader, "load_sweep_config", counted)
    first = loader.load_sweep_config(master, ["problem=iris", "train.seed=1", "optimizer.lr=0.5"])
    second = loader.load_sweep_config(master, ["problem=iris", "train.seed=2"])
    assert compositions == [["problem=iris"]]  # the second job reused the first's composition
    assert (first.train.seed, first.optimizer.lr) == (1, 0.5)
    assert (second.train.seed, second.optimizer.lr) == (2, 0.01)  # not the first job's values
    assert list(second.hydra.overrides.task) == ["problem=iris", "train.seed=2"]
    monkeypatch.undo()
    hydras = hydra_loader.load_sweep_config(master, ["problem=iris", "train.seed=2"])
    assert _plain(second) == _plain(hydras)
    first.train.seed = 99  # a job changing its config leaves the cached one alone
    third = loader.load_sweep_config(master, ["problem=iris"])
    assert third.train.seed == 0


def _sweepers_loader(hydra_loader: ConfigLoaderImpl, master: DictConfig) -> CachingConfigLoader:
    """The loader that the sweeper Hydra's plugin scan found hands its launcher, as in a CLI run."""
    found = Plugins.instance().discover(Sweeper)
    (sweeper_class,) = [s for s in found if s.__name__ == "PreflightedSweeper"]
    sweeper = sweeper_class(max_batch_size=None)
    context = HydraContext(config_loader=hydra_loader, callbacks=Callbacks())
    sweeper.setup(hydra_context=context, task_function=lambda cfg: None, config=master)
    return sweeper.launcher.hydra_context.config_loader


def _compose_in_worker(
    loader: CachingConfigLoader, master: DictConfig, job: list, state: dict, base: object
) -> tuple:
    """Run in a joblib worker: its pid, whether its cache had the job's files, the config, how
    many objects the garbage collector has frozen in this worker, and whether Hydra composed.

    First it takes on the submitting process's Hydra state (job name, resolvers, version base),
    as Hydra's joblib launcher does for its jobs; without it the ``hydra`` node would differ
    in ``job.name`` and ``runtime.version_base`` whenever an earlier test set them here.
    """
    setup_globals()
    Singleton.set_state(state)
    version.setbase(None if base is None else str(base))  # a Version back to its text
    hit = any(True for _ in loader._cache)
    hydras = loader._loader.load_sweep_config
    composed = []
    loader._loader.load_sweep_config = lambda *args: composed.append(1) or hydras(*args)
    config = _plain(loader.load_sweep_config(master, job))
    return os.getpid(), hit, config, gc.get_freeze_count(), bool(composed)


def _in_fresh_workers(loader: CachingConfigLoader, master: DictConfig, jobs: list) -> list:
    """:func:`_compose_in_worker` for every job, in two new loky workers."""
    # Fresh workers, as a sweep's launcher gets: loky reuses workers across calls, and one
    # left by an earlier test carries that test's Hydra state and its own cache.
    get_reusable_executor(kill_workers=True).shutdown(wait=True)
    state = Singleton.get_state()
    return joblib.Parallel(n_jobs=2, backend="loky")(
        joblib.delayed(_compose_in_worker)(loader, master, job, state, version.getbase())
        for job in jobs
    )


@pytest.mark.slow
def test_the_loader_pickles_and_keeps_one_cache_per_joblib_worker(hydra_loader, master):
    loader = _sweepers_loader(hydra_loader, master)
    assert isinstance(loader, CachingConfigLoader)
    loader.load_sweep_config(master, ["problem=iris"])
    # importable by name, so cloudpickle ships it by reference: shipped by value, it would get
    # a fresh module (and cache) per job
    module = importlib.import_module(type(loader).__module__)
    assert module.CachingConfigLoader is type(loader)
    jobs = [["problem=iris", f"train.seed={seed}"] for seed in range(8)]
    expected = [_plain(hydra_loader.load_sweep_config(master, job)) for job in jobs]
    done = _in_fresh_workers(loader, master, jobs)
    assert [config for _, _, config, _, _ in done] == expected
    workers = {pid for pid, *_ in done}
    assert os.getpid() not in workers
    misses = [pid for pid, hit, *_ in done if not hit]
    assert sorted(misses) == sorted(workers)  # one composition per worker, not one per job
    assert sum(composed for *_, composed in done) == len(workers)
    # from its second job on, a worker's long-lived objects are frozen: loky's gc.collect()
    # after every task then no longer walks torch's and MLflow's half a million objects
    for pid in workers:
        frozen = [count for p, _, _, count, _ in done if p == pid]
        assert all(count > 0 for count in frozen[1:])
    assert max(len([p for p, *_ in done if p == pid]) for pid in workers) >= 2
    unpickled = pickle.loads(pickle.dumps(loader))
    assert _plain(unpickled.load_sweep_config(master, jobs[0])) == expected[0]
    assert unpickled.get_search_path() is not None  # the rest is Hydra's loader


@pytest.mark.slow
def test_workers_read_the_compositions_shared_by_the_sweeper(hydra_loader, master, tmp_path):
    loader = _sweepers_loader(hydra_loader, master)
    jobs = [[f"problem={p}", f"train.seed={s}", "optimizer.lr=0.1"] for p in ("iris", "wine",
            "moons") for s in range(2)] + [["problem=iris", "+new.key=1"]]  # fmt: skip
    expected = [_plain(hydra_loader.load_sweep_config(master, job)) for job in jobs]
    loader.share(master, jobs, tmp_path)
    (shared,) = tmp_path.glob(".rprop_bench_configs_*.pickle")
    done = _in_fresh_workers(loader, master, jobs)
    assert [config for _, _, config, _, _ in done] == expected
    assert len({pid for pid, *_ in done}) == 2
    assert not any(composed for *_, composed in done)  # no worker composed: all were read
    loader.forget_shared()
    assert not shared.exists()
    # a worker that cannot read the file (another machine) composes, with the same result
    loader._shared = str(tmp_path / "elsewhere" / shared.name)
    done = _in_fresh_workers(loader, master, jobs[:2])
    assert [config for _, _, config, _, _ in done] == expected[:2]
    assert all(composed for *_, composed in done)


#: A small sweep: 2 problems × 2 seeds, 2 epochs, no artifacts.
SMALL = [
    "optimizer=rprop", "problem=iris,line", "train.seed=0,1", "train.epochs=2",
    "tracking.heatmap=false", "tracking.histograms=false",
]  # fmt: skip


def _without_store(params: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in params.items() if k != "tracking.uri"}  # a store per sweeper


#: Final metrics that are times, not results.
TIMES = {schema.TRAIN_SECONDS, schema.LOGGING_SECONDS, schema.SECONDS_TO_TARGET, schema.WALL_TIME}


def _results(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if k not in TIMES}  # bit for bit: one torch thread


@pytest.mark.slow
def test_a_cli_sweep_uses_the_sweeper_and_records_what_the_basic_one_does(tmp_path):
    sweepers = {"preflighted": [], "basic": ["hydra/sweeper=basic"]}
    uris, processes = {}, {}
    for name, extra in sweepers.items():  # both at once: two cores
        cwd = tmp_path / name
        uris[name] = new_store(cwd)
        processes[name] = start_cli("sweep", *SMALL, *extra, f"tracking.uri={uris[name]}", cwd=cwd)
    runs = {}
    for name, process in processes.items():
        out, err = process.communicate(timeout=240)
        assert process.returncode == 0, err
        assert "runs: 4 FINISHED; parent run" in out
        (multirun,) = (tmp_path / name).glob("multirun/*/*/multirun.yaml")
        target = OmegaConf.load(multirun).hydra.sweeper._target_
        assert target.rsplit(".", 1)[-1] == {"preflighted": "PreflightedSweeper",
                                              "basic": "BasicSweeper"}[name]  # fmt: skip
        runs[name] = {
            r.data.tags[schema.TAG_RUN_KEY]: (
                r.info.status,
                _without_store(r.data.params),
                _results(r.data.metrics),
            )
            for r in runs_of_kind(uris[name])
        }
    assert len(runs["preflighted"]) == 4
    assert all(results for _, _, results in runs["preflighted"].values())
    assert runs["preflighted"] == runs["basic"]  # same runs, params and final metrics


def test_hydra_discovers_the_sweeper(master):
    assert master.hydra.sweeper._target_.endswith("preflighted_sweeper.PreflightedSweeper")
    assert Path(CONF_DIR / "config.yaml").read_text().count("override hydra/sweeper: preflighted")
