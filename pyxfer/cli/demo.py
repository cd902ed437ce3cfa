"""``pyxfer demo``: the whole mission on the embedded digits, in a few minutes."""

from __future__ import annotations

import argparse

EPILOG = """\
stages (scikit-learn's 1,797 8x8 digits, bundled; 80 % pool / 20 % held-out test):
  1 pretrain   SimCLR on the pool's images without labels; kNN vs random init
  2 transfer   5 labels per class: linear probe and fine-tune from the pretrained
               backbone vs the same backbone from scratch
  3 zero-shot  digits 1, 4, 7 held out; recognised from a table of how digits are drawn
  4 deploy     ONNX bundle (fp32 + int8) verified against torch, served without torch

Writes OUT/results.json, OUT/report.html, the runs of each stage and OUT/bundle.
--quick shrinks every stage (under a minute; numbers are lower but beat chance).
"""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "demo",
        help="run the whole path on the embedded digits (pretrain, transfer, zero-shot, deploy)",
        description="Self-supervised pretraining, few-label transfer, zero-shot recognition and "
        "torch-free deployment on the embedded digits data set, with a results table and a "
        "report. No download.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default="pyxfer-demo", metavar="DIR", help="output directory")
    p.add_argument("--quick", action="store_true", help="small version (under a minute)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="augmentation threads (0 = all)")
    return p


def run(args: argparse.Namespace) -> int:
    from pyxfer.demo import format_table, run_demo

    result = run_demo(
        args.out, quick=args.quick, device=args.device, seed=args.seed, threads=args.threads
    )
    print(format_table(result))
    print(f"\nresults: {result.out / 'results.json'}\nreport:  {result.out / 'report.html'}")
    return 0
