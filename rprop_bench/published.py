"""The published numbers that the study ``classics`` puts next to its own (pure data).

Each :class:`PublishedValue` names its source, the place in it (page, table or figure), and
whether it was checked against a copy of the source (``verified``). Riedmiller & Braun (1993)
and Igel & Hüsken (2003) are not available offline here: their rows are the team's
transcription, marked ``verified=False``, and every table that shows them says so. A row
whose source we could read (the MNIST-1D package's README) is ``verified=True``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PUBLISHED", "PublishedValue", "published_for"]

RB1993 = (
    "Riedmiller & Braun (1993), A direct adaptive method for faster backpropagation "
    "learning: the RPROP algorithm, Proc. IEEE ICNN, pp. 586-591"
)
LW1988 = (
    "Lang & Witbrock (1988), Learning to tell two spirals apart, Proc. Connectionist "
    "Models Summer School, pp. 52-59"
)
IH2003 = (
    "Igel & Hüsken (2003), Empirical evaluation of the improved Rprop learning "
    "algorithms, Neurocomputing 50, pp. 105-123"
)
GREYDANUS2020 = (
    "Greydanus (2020), Scaling down deep learning, arXiv:2011.14439; "
    "github.com/greydanus/mnist1d README"
)
UNCHECKED = "transcribed by the team; no copy of the paper offline to check it against"


@dataclass(frozen=True)
class PublishedValue:
    """One published number.

    Attributes:
        part: the study's part (``rb1993``, ``ih2003``, ``mnist1d``).
        problem: the harness's problem name.
        method: the harness's cell name (e.g. ``rprop+``, ``backprop``).
        quantity: what the number is (``mean_epochs``, ``sd_epochs``,
            ``working_range_low``, ``test_accuracy``, ``ordering`` ...).
        value: the number (``nan`` for ``ordering``, whose claim is ``claim``).
        source: the publication.
        location: page, table or figure in it.
        verified: whether the number was read off a copy of the source in this project.
        note: a caveat (how the number was obtained, what it is conditional on).
        claim: for an ``ordering``, the published order, best first.
        at: the learning parameter (ε, Δ0) the number was measured at, where the source ties
            it to one; a cell run at another value is shown beside it, not judged by it.
    """

    part: str
    problem: str
    method: str
    quantity: str
    value: float
    source: str
    location: str
    verified: bool
    note: str = ""
    claim: str = ""
    at: float | None = None


def _rb(
    problem: str, method: str, quantity: str, value: float, note: str = "", at: float | None = None
) -> PublishedValue:
    return PublishedValue(
        "rb1993",
        problem,
        method,
        quantity,
        value,
        RB1993,
        "p. 590, Table 1",
        False,
        f"{UNCHECKED}; {note}" if note else UNCHECKED,
        at=at,
    )


NAN = float("nan")
_BEST = "at the paper's best parameter (ε = 1.9 for backprop, Δ0 = 2.0 for Rprop)"

PUBLISHED: tuple[PublishedValue, ...] = (
    # Riedmiller & Braun (1993): the 10-5-10 encoder, mean and sd of the epochs over the
    # successful trials, each learning rule at its best parameter; its working range (WR).
    _rb("encoder_10_5_10", "backprop", "mean_epochs", 121, _BEST, at=1.9),
    _rb("encoder_10_5_10", "backprop", "sd_epochs", 30, _BEST, at=1.9),
    _rb("encoder_10_5_10", "backprop", "working_range_low", 1.1, "ε"),
    _rb("encoder_10_5_10", "backprop", "working_range_high", 2.6, "ε"),
    _rb("encoder_10_5_10", "rprop+", "mean_epochs", 19, _BEST, at=2.0),
    _rb("encoder_10_5_10", "rprop+", "sd_epochs", 3, _BEST, at=2.0),
    _rb("encoder_10_5_10", "rprop+", "working_range_low", 0.05, "Δ0"),
    _rb("encoder_10_5_10", "rprop+", "working_range_high", 2.0, "Δ0"),
    # The tight 12-2-12 encoder: Rprop+ at its best Δ0 (1.0 as transcribed)
    _rb("encoder_12_2_12", "rprop+", "mean_epochs", 322, "at Δ0 = 1.0", at=1.0),
    _rb("encoder_12_2_12", "rprop+", "sd_epochs", 112, "at Δ0 = 1.0", at=1.0),
    # The two spirals: Lang & Witbrock's backprop with momentum, and Rprop as cited
    # second-hand (the spirals are not among the 1993 paper's benchmarks as transcribed).
    PublishedValue(
        "rb1993",
        "two_spirals_1988",
        "backprop+momentum",
        "mean_epochs",
        20000,
        LW1988,
        "p. 55, text",
        False,
        f"{UNCHECKED}; about 20,000 epochs, the order of magnitude only",
    ),
    PublishedValue(
        "rb1993",
        "two_spirals_1988",
        "rprop+",
        "mean_epochs",
        6000,
        "second-hand (cited in later Rprop tutorials)",
        "-",
        False,
        "about 6,000 epochs; the primary source is not identified",
    ),
    # Igel & Hüsken (2003): their conclusion on every problem of their study.
    PublishedValue(
        "ih2003",
        "*",
        "*",
        "ordering",
        NAN,
        IH2003,
        "Section 5 and Tables 2-4",
        False,
        f"{UNCHECKED}; the improved variants need fewer evaluations to a "
        "given error than the originals, and iRprop+ is best overall",
        claim="iRprop± ahead of Rprop±; iRprop+ best",
    ),
    # Greydanus (2020): the MNIST-1D package's test accuracies (its README table, read here).
    *(
        PublishedValue(
            "mnist1d",
            "mnist1d",
            model,
            "test_accuracy",
            value,
            GREYDANUS2020,
            "README, table 'Comparing MNIST and MNIST-1D', row MNIST-1D",
            True,
            "rounded to whole percent; the README does not say over how many runs (its "
            "notebook trains one)",
        )
        for model, value in (("linear", 0.32), ("mnist1d_mlp", 0.68), ("mnist1d_cnn", 0.94))
    ),
)


def published_for(part: str, problem: str, method: str, quantity: str) -> PublishedValue | None:
    """The published value of one cell, or ``None`` where the source has none."""
    for row in PUBLISHED:
        if (row.part, row.problem, row.method, row.quantity) == (part, problem, method, quantity):
            return row
    return None
