"""The reproducibility record a report opens with: the code commits of its runs, the
command that rendered it, the package versions, the machine, and the run count.

The versions and the machine are those of the rendering process (the runs record their
commit, run key and command as tags, which the per-run table carries).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import subprocess

import pandas as pd

from rprop_bench.redaction import redact
from rprop_bench.text import count

__all__ = ["PACKAGES", "commit_line", "environment_lines"]

#: The packages whose versions decide a report's numbers and figures.
PACKAGES = ("rprop-bench", "torch", "numpy", "scipy", "pandas", "mlflow", "matplotlib",
            "scikit-learn", "hydra-core")  # fmt: skip


def commit_line(runs: pd.DataFrame) -> str:
    """The code commits the runs were made at, each with its run count (most runs first)."""
    commits = runs["git_commit"].replace("", "unknown") if "git_commit" in runs else None
    if commits is None or commits.empty:
        return "Code: no commit recorded"
    counts = commits.value_counts()
    shown = ", ".join(f"{c[:12]} ({count(n, 'run')})" for c, n in counts.items())
    return f"Code: the runs were made at commit{'s' if len(counts) > 1 else ''} {shown}"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cpu() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo, else what platform says) and cores."""
    name = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            name = next((line.split(":", 1)[1].strip() for line in f
                         if line.startswith("model name")), "")  # fmt: skip
    except OSError:
        pass
    name = name or platform.processor() or platform.machine()
    return f"{name}, {os.cpu_count()} logical cores"


def _gpus() -> str:
    """The GPUs ``nvidia-smi -L`` lists, or none."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return "none found"
    try:
        listed = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "nvidia-smi did not answer"
    gpus = [line.split("(")[0].strip() for line in listed.stdout.splitlines() if line.strip()]
    return "; ".join(gpus) or "none found"


def environment_lines(command: str) -> list[str]:
    """The command, the package versions and the machine of the rendering process."""
    versions = ", ".join(f"{p} {_version(p)}" for p in PACKAGES)
    return [
        f"Command: {redact(command) or '(library call: rprop_bench.report.build_report)'}",
        f"Software: Python {platform.python_version()}, {versions}",
        f"Machine: {platform.system()} {platform.release()}; CPU {_cpu()}; GPU {_gpus()}",
    ]
