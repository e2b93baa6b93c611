"""A user's own configs, in their own folder: ``hydra.searchpath=[file://DIR]`` or ``--config-dir``.

The CLI checks every chosen option against the configs on the whole search path, so an
optimizer in the user's folder is an option like the package's own, in runs and in sweeps.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from harness_helpers import run_cli, runs_of_kind

from rprop_bench import schema
from rprop_bench.cli import help_text
from rprop_bench.cli.compose import CONF_DIR, check_group_choices, parse, preflight
from rprop_bench.cli.validate import ConfigError

NAME = "slow_sgd"  # the package's sgd.yaml with lr 0.05


@pytest.fixture
def user_conf(tmp_path) -> Path:
    """A user's config folder holding ``optimizer/slow_sgd.yaml``."""
    text = (CONF_DIR / "optimizer" / "sgd.yaml").read_text()
    assert "\nlr: 0.1\n" in text
    folder = tmp_path / "myconf"
    (folder / "optimizer").mkdir(parents=True)
    (folder / "optimizer" / f"{NAME}.yaml").write_text(text.replace("\nlr: 0.1\n", "\nlr: 0.05\n"))
    return folder


def _searchpath(folder: Path) -> str:
    return f"hydra.searchpath=[file://{folder}]"


def test_a_users_option_is_unknown_without_its_folder(user_conf):
    with pytest.raises(ConfigError, match=f"unknown optimizer '{NAME}'; valid optimizers: adam"):
        check_group_choices(parse([f"optimizer={NAME}"]))


def test_the_search_path_makes_a_users_option_valid(user_conf):
    check_group_choices(parse([f"optimizer={NAME}", _searchpath(user_conf)]))
    check_group_choices(parse([f"optimizer={NAME},sgd"]), [str(user_conf)])
    with pytest.raises(ConfigError, match=f"valid optimizers: .*{NAME}"):
        check_group_choices(parse(["optimizer=nope", _searchpath(user_conf)]))


def test_the_preflight_composes_a_users_config(user_conf):
    _, (cfg,) = preflight([f"optimizer={NAME}", _searchpath(user_conf)], sweep=False)
    assert cfg.optimizer.lr == 0.05
    jobs, configs = preflight(
        [f"optimizer={NAME},sgd", "problem=line"], sweep=True, extra_dirs=[str(user_conf)]
    )
    assert [job[0] for job in jobs] == [f"optimizer={NAME}", "optimizer=sgd"]
    assert [c.optimizer.lr for c in configs] == [0.05, 0.1]


def test_a_search_path_folder_that_is_missing_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="is not a directory"):
        preflight([_searchpath(tmp_path / "missing")], sweep=False)
    with pytest.raises(ConfigError, match=r"--config-dir .*: no such directory"):
        preflight([], sweep=False, extra_dirs=[str(tmp_path / "missing")])


def test_help_lists_a_users_options(user_conf):
    assert NAME not in help_text()
    assert NAME in help_text(["--config-dir", str(user_conf)])
    assert NAME in help_text([], [_searchpath(user_conf)])


@pytest.mark.slow
def test_a_run_with_a_users_optimizer_through_the_search_path(tmp_path, user_conf, store_uri):
    work = tmp_path / "work"
    work.mkdir()
    out = run_cli(
        f"optimizer={NAME}", "problem=line", "train.epochs=3", _searchpath(user_conf),
        f"tracking.uri={store_uri}", cwd=work,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    (run,) = runs_of_kind(store_uri)
    assert run.info.status == "FINISHED"
    assert run.data.tags[schema.TAG_OPTIMIZER] == NAME
    assert run.data.params["optimizer.lr"] == "0.05"


@pytest.mark.slow
def test_a_joblib_sweep_with_a_users_optimizer_from_config_dir(tmp_path, user_conf, store_uri):
    work = tmp_path / "work"
    work.mkdir()
    out = run_cli(
        "sweep", "--config-dir", str(user_conf), f"optimizer={NAME},sgd", "problem=line",
        "train.seed=0", "train.epochs=3", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
        f"tracking.uri={store_uri}", cwd=work,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "runs: 2 FINISHED; parent run" in out.stdout
    runs = runs_of_kind(store_uri)
    lrs = {r.data.tags[schema.TAG_OPTIMIZER]: r.data.params["optimizer.lr"] for r in runs}
    assert lrs == {NAME: "0.05", "sgd": "0.1"}


THROWAWAY_CODE = '''
"""A user's own code: an optimizer class and a data function the harness has never seen."""
import numpy as np
import torch

from rprop_bench.problems import CLASSIFICATION, RawData, prepare


class SignDescent(torch.optim.SGD):
    """SGD under a name of its own: not in any list of the harness."""


def xor_data(name, split_seed, val_fraction, test_fraction, standardize, standardize_target,
             options):
    rng = np.random.default_rng(split_seed)
    x = rng.normal(size=(int(options["n_samples"]), 2))
    y = (x[:, 0] * x[:, 1] > 0).astype(np.int64)
    return prepare(RawData(x, y, CLASSIFICATION), name, split_seed=split_seed,
                   val_fraction=val_fraction, test_fraction=test_fraction,
                   standardize=standardize, standardize_target=standardize_target)
'''
# One file per new optimizer and per new problem, as the README's "how to add" says.
THROWAWAY_OPTIMIZER = """_target_: throwaway.SignDescent
_partial_: true
lr: 0.1
elementwise: true  # so its seeds may train stacked
"""
THROWAWAY_PROBLEM = """defaults:
  - /base/problem@_here_
  - _self_
data:
  _target_: throwaway.xor_data
  name: xor
  options: {n_samples: 200}
target_loss: 0.3
"""


@pytest.mark.slow
def test_a_throwaway_optimizer_and_problem_sweep_stack_and_report(tmp_path, store_uri):
    """A new optimizer and a new problem are one config file each (plus the code they name):
    they run in a sweep, stack their seeds (declared elementwise), and appear in the report."""
    code, conf, work = tmp_path / "code", tmp_path / "myconf", tmp_path / "work"
    for folder in (code, conf / "optimizer", conf / "problem", work):
        folder.mkdir(parents=True)
    (code / "throwaway.py").write_text(THROWAWAY_CODE)
    (conf / "optimizer" / "sign_descent.yaml").write_text(THROWAWAY_OPTIMIZER)
    (conf / "problem" / "xor.yaml").write_text(THROWAWAY_PROBLEM)
    env = {"PYTHONPATH": str(code)}
    out = run_cli(
        "sweep", "--config-dir", str(conf), "optimizer=sign_descent,adam", "problem=xor,iris",
        "train.seed=0,1", "train.epochs=5", "train.vectorize_seeds=true",
        f"tracking.uri={store_uri}", cwd=work, env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "runs: 8 FINISHED; parent run" in out.stdout
    runs = runs_of_kind(store_uri)
    assert len(runs) == 8
    ours = [r for r in runs if r.data.tags[schema.TAG_OPTIMIZER] == "sign_descent"]
    assert {r.data.tags[schema.TAG_PROBLEM] for r in ours} == {"xor", "iris"}
    assert {r.data.tags.get(schema.TAG_VECTORIZED) for r in ours} == {"2"}  # stacked in pairs
    report = run_cli(
        "report", f"tracking.uri={store_uri}", "report.formats=[png]", "report.progress=false",
        cwd=work, env=env,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr
    text = (work / "reports" / "rprop-bench" / "report.md").read_text()
    assert "sign_descent" in text
    assert "xor" in text
