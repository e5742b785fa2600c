"""Evaluation: metrics, baselines, the batch runner behind `fewrec eval`, reports and plots.

Only cli.py (and `python -m fewrec eval`) import this package.
"""

from fewrec.eval.runner import EvalReport, MethodResult, evaluate

__all__ = ["EvalReport", "MethodResult", "evaluate"]
