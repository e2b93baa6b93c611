"""The configs come from the installed package ``rprop_bench.conf``, so that a wheel carries them.

``conf/`` stays at the top of the repository; pyproject.toml installs it as the package
``rprop_bench.conf`` (package-dir) with every YAML file as package data. ``.ci/run`` builds
the wheel and runs a sweep from it; these tests catch the same mistakes without building.
"""

from __future__ import annotations

import glob
import importlib
import importlib.resources
import importlib.util
import sys
from pathlib import Path

import pytest

import rprop_bench
from rprop_bench.cli import compose, report_command

REPO = Path(__file__).resolve().parents[1]
REPO_CONF = REPO / "conf"


def _repo_yaml() -> set[str]:
    return {p.relative_to(REPO_CONF).as_posix() for p in REPO_CONF.rglob("*.yaml")}


def _resource_yaml(folder, prefix: str = "") -> set[str]:
    """The YAML files under an importlib.resources folder, as paths relative to it."""
    found: set[str] = set()
    for entry in folder.iterdir():
        if entry.is_dir():
            found |= _resource_yaml(entry, f"{prefix}{entry.name}/")
        elif entry.name.endswith(".yaml"):
            found.add(prefix + entry.name)
    return found


def test_the_config_location_is_the_package_rprop_bench_conf():
    package = importlib.import_module(compose.CONF_PACKAGE)
    assert package.__name__ == f"{rprop_bench.__name__}.conf"
    assert Path(str(importlib.resources.files(compose.CONF_PACKAGE))) == compose.CONF_DIR
    assert (compose.CONF_DIR / f"{compose.CONFIG_NAME}.yaml").is_file()
    assert not hasattr(report_command, "CONF_DIR")  # one definition, in compose


def test_the_location_follows_the_package_wherever_it_is_installed(tmp_path, monkeypatch):
    elsewhere = tmp_path / "site-packages" / "rprop_bench" / "conf"
    elsewhere.mkdir(parents=True)
    (elsewhere / "__init__.py").write_text("")
    (elsewhere / "config.yaml").write_text("{}\n")
    spec = importlib.util.spec_from_file_location(
        compose.CONF_PACKAGE, elsewhere / "__init__.py", submodule_search_locations=[]
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, compose.CONF_PACKAGE, module)
    assert compose._conf_dir() == elsewhere  # not the checkout's conf/


def test_a_missing_config_package_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, compose.CONF_PACKAGE, None)  # as if not installed
    with pytest.raises(ImportError, match="install rprop-bench again"):
        compose._conf_dir()


def test_every_yaml_of_the_repository_is_a_resource_of_the_package():
    listed = _resource_yaml(importlib.resources.files(compose.CONF_PACKAGE))
    assert listed == _repo_yaml()
    assert {"config.yaml", "report.yaml", "optimizer/rprop.yaml"} <= listed


def test_the_package_offers_every_config_file_as_an_option():
    options = compose.all_group_options()
    for group in compose.GROUPS:
        assert options[group] == sorted(p.stem for p in (REPO_CONF / group).glob("*.yaml"))


def _setuptools_settings() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_the_wheel_ships_every_config_and_the_kernel_source():
    settings = _setuptools_settings()
    folders = {**{p: p.replace(".", "/") for p in settings["packages"]}, **settings["package-dir"]}
    assert folders["rprop_bench.conf"] == "conf"

    def shipped(package: str) -> set[str]:
        root = REPO / folders[package]
        return {
            Path(found).as_posix()
            for pattern in settings["package-data"].get(package, [])
            for found in glob.glob(pattern, root_dir=root, recursive=True)
        }

    assert shipped("rprop_bench.conf") >= _repo_yaml()
    assert "_fused_rprop.c" in shipped("rprop_bench.optim")
    assert "py.typed" in shipped("rprop_bench")


def test_every_package_and_config_group_is_listed_for_the_wheel():
    packages = set(_setuptools_settings()["packages"])
    for top in ("rprop_bench", "hydra_plugins"):
        for module in (REPO / top).rglob("*.py"):
            folder = module.parent.relative_to(REPO)
            if "__pycache__" not in folder.parts:
                assert ".".join(folder.parts) in packages, f"{folder} is not in the wheel"
    for config in REPO_CONF.rglob("*.yaml"):  # setuptools takes data folders for packages
        folder = config.parent.relative_to(REPO_CONF)
        package = ".".join((compose.CONF_PACKAGE, *folder.parts))
        assert package in packages, f"conf/{folder} is not listed in pyproject.toml"


@pytest.mark.skipif(not (REPO / ".git").exists(), reason="not a git checkout")
def test_a_users_reports_are_ignored_and_the_committed_studies_are_not():
    """A report written to reports/<experiment>/ does not dirty a checkout, and no tracked
    file of reports/ (the committed studies) or of conf/ is ignored."""
    import subprocess

    def ignored(*paths: str) -> set[str]:
        out = subprocess.run(
            ["git", "-C", str(REPO), "check-ignore", "--no-index", *paths],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        return set(out.stdout.split())

    assert ignored("reports/rprop-bench/index.html", "reports/my_study/report.md") == {
        "reports/rprop-bench/index.html",
        "reports/my_study/report.md",
    }
    tracked = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "reports", "conf"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert tracked
    assert ignored(*tracked) == set()
