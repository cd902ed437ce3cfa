"""``pyxfer report``: (re)generate a run directory's ``report.html``."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "report",
        help="write a run's self-contained report.html",
        description="Regenerate RUN/report.html from what the run directory holds: summary, "
        "loss / learning-rate / accuracy curves, augmented views, confusion matrix, feature "
        "map, results with their protocols, environment and configuration. The page embeds "
        "its plots and needs nothing else to open. Prints the report's path.",
    )
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of RUN/report.html")
    return p


def run(args: argparse.Namespace) -> int:
    from pyxfer.report import write_report

    print(write_report(args.run, args.output))
    return 0
