"""``python -m rprop_bench report [overrides]``: compose ``conf/report.yaml`` and render.

The harness's command line dispatches the word ``report`` here; this module can also run on
its own: ``python -m rprop_bench.cli.report_command experiment=NAME``.

Bad input (an unknown key, a missing store, an experiment without runs, runs lacking a
metric) prints one line on stderr and returns a non-zero code, without a traceback.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from rprop_bench.text import count

EXIT_BAD_INPUT = 2

USAGE = """usage: python -m rprop_bench report [experiment=NAME] [KEY=VALUE ...]

Render reports/<experiment>/ (index.html, report.md, figures/, tables/) from the runs in the
MLflow store; nothing is re-trained. `experiment=NAME` is short for tracking.experiment=NAME.
Examples:
  python -m rprop_bench report experiment=variants
  python -m rprop_bench report experiment=minibatch report.label_params=[train.batch_size]
  python -m rprop_bench report experiment=NAME tracking.uri=sqlite:///other.db report.sweep=all

The keys, their defaults and what they mean (conf/report.yaml):
"""


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _alias_experiment(overrides: list[str]) -> list[str]:
    """``experiment=NAME`` (or ``+experiment=NAME``) means ``tracking.experiment=NAME``.

    ``experiment`` is also the harness's config group of studies, whose names are the MLflow
    experiments they log to; on the report command line it names the experiment to read.
    """
    out = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if sep and key.lstrip("+") == "experiment":
            out.append(f"tracking.experiment={value}")
        else:
            out.append(item)
    return out


def compose_report_config(overrides: list[str]):  # -> omegaconf.DictConfig
    """Compose ``conf/report.yaml`` with Hydra's compose API and resolve it."""
    from hydra import compose
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from rprop_bench.cli.compose import initialized

    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    with initialized(job_name="report", version_base="1.3"):
        cfg = compose(config_name="report", overrides=_alias_experiment(list(overrides)))
    OmegaConf.resolve(cfg)
    return cfg


def main(overrides: list[str]) -> int:
    """Render the report the overrides describe; return the process exit code."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from rprop_bench.report import ReportOptions, build_report
    from rprop_bench.results import ResultsError

    if any(a in ("-h", "--help") for a in overrides):
        from rprop_bench.cli.compose import CONF_DIR

        print(USAGE)
        print((CONF_DIR / "report.yaml").read_text(encoding="utf-8"))
        return 0
    try:
        cfg = compose_report_config(overrides)
        r = cfg.report
        out = Path(str(r.out))
        formats = [str(f).lower() for f in r.formats]
        options = ReportOptions(
            out=out,
            formats=tuple(formats),
            sweep=str(r.sweep),
            confidence=float(r.confidence),
            n_resamples=int(r.n_resamples),
            seed=int(r.seed),
            alpha=float(r.alpha),
            rope_relative=float(r.rope_relative),
            rope_absolute=float(r.rope_absolute),
            log_to_mlflow=bool(r.log_to_mlflow),
            progress=bool(r.progress),
            label_params=tuple(str(k) for k in r.get("label_params", None) or ()),
            control=None if r.get("control") is None else str(r.control),
            budgets=tuple(float(b) for b in r.get("budgets", None) or ()),
            command=shlex.join(["python", "-m", "rprop_bench", "report", *overrides]),
        )
        report = build_report(str(cfg.tracking.uri), str(cfg.tracking.experiment), options)
    except (ResultsError, HydraException, OmegaConfBaseException, ValueError) as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:
        print(f"error: cannot write the report: {_one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(
        f"report on {count(report.n_runs, 'run')} ({report.n_failed} failed) "
        f"written to {report.index_html}"
    )
    from rprop_bench.report import foreign_line, interrupted_line, repeated_line, running_line

    if report.foreign:
        print(foreign_line(report.foreign))
    if report.repeated:
        print(repeated_line(report.repeated))
    if report.interrupted:
        print(interrupted_line(report.interrupted))
    if report.running:
        print(running_line(report.running))
    if report.logged_to_run:
        print(f"logged as artifacts '{_artifact_dir()}' of sweep run {report.logged_to_run}")
    return 0


def _artifact_dir() -> str:
    from rprop_bench import schema

    return schema.ARTIFACT_REPORT_DIR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
