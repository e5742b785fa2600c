"""Evaluation: metrics, baselines, the batch runner behind `fewrec eval`, the chat's and the
conversations' evaluations, and the harness they share (harness.py, report.py,
provenance.py, anchors.toml).

Only cli/ (and `python -m fewrec eval`), the fitting commands of fit/ and the benchmarks of bench/
import this package.
"""

from fewrec.eval.runner import EvalReport, MethodResult, evaluate

__all__ = ["EvalReport", "MethodResult", "evaluate"]
