"""One self-contained HTML page about finished searches and their ensembles.

    from eegtune.reports import ReportRequest, build_report
    build_report(ReportRequest(experiments=("runs/c1",), out="report.html"))

:mod:`experiment_data` reads an experiment, :mod:`search_figures` and
:mod:`result_figures` draw it, :mod:`page` writes the HTML, :mod:`build` puts it together.
"""

from eegtune.reports.build import ReportRequest, build_report

__all__ = ["ReportRequest", "build_report"]
