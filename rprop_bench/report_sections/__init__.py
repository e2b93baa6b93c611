"""The sections of the comparison report, and what they share.

:mod:`rprop_bench.report` builds the report: it reads the runs into a
:class:`~rprop_bench.report_sections.context.ReportContext` (:mod:`.inputs`) and calls each
section of its ``SECTIONS`` list in turn with that context and the
:class:`~rprop_bench.document.DocumentWriter`. The modules here, one job each:

- :mod:`.options`: :class:`ReportOptions`, how to render;
- :mod:`.context`: :class:`ReportContext`, what every section reads, and the section types;
- :mod:`.inputs`: reading and checking the runs into a context;
- :mod:`.common`: number formatting and the helpers several sections use;
- :mod:`.finals`: the final results of one problem (the per-problem table's numbers);
- :mod:`.problem`: one section per problem (its list of parts: ``problem.PARTS``);
- :mod:`.across`: comparisons across problems (its list of parts: ``across.PARTS``);
- :mod:`.working_range`: maps of the cost over a grid of two hyperparameters;
- :mod:`.line`: the seed example y = 2x + 3;
- :mod:`.runs`: the table of every run.

Sections only read (through :mod:`rprop_bench.results`) and lay out; they never write to
MLflow.
"""
