"""The `fewrec` command line: builds the typer `app` from one module per command group and
`main`, the entry point that prints fewrec's own errors as one line."""

from __future__ import annotations

import contextlib
import signal
import sys

import typer

from fewrec.cli import bench, chat, chat_evaluation, data, evaluate, recommend, results, tune
from fewrec.cli.common import console, terminate
from fewrec.data.errors import FewrecError

app = typer.Typer(
    help="fewrec: an LLM-agent recommender with few-shot reasoning, measured honestly.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """fewrec: an LLM-agent recommender with few-shot reasoning, measured honestly."""


# Registered in the order `fewrec --help` lists them.
app.command()(data.datasets)
app.command()(data.index)
app.command()(recommend.recommend)
app.command()(chat.chat)
app.command()(data.search)
app.command(name="eval")(evaluate.eval_command)
app.command(name="eval-chat")(chat_evaluation.eval_chat)
app.command(name="eval-conversations")(chat_evaluation.eval_conversations)
app.command(name="compare-results")(results.compare_results)
app.command()(tune.tune)
app.command()(bench.bench)
app.command(name="recommend-batch")(recommend.recommend_batch)


def main() -> None:
    """Entry point that prints fewrec's own errors as one line instead of a traceback."""
    previous = None
    with contextlib.suppress(ValueError):  # only the main thread may set a handler
        previous = signal.signal(signal.SIGTERM, terminate)
    try:
        app()
    except FewrecError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)
    finally:
        if previous is not None:  # e.g. called from a test: leave the process as it was
            signal.signal(signal.SIGTERM, previous)
