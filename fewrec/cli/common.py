"""What every `fewrec` command needs before its own work: the console and its dim notes, Settings
from a file and the command's options, the dataset's split, the pipeline, and Ray when asked."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

from fewrec.config import Settings
from fewrec.data.errors import FewrecError

if TYPE_CHECKING:
    from fewrec.agent.pipeline import Pipeline
    from fewrec.data.split import LeaveOneOutSplit
    from fewrec.eval.provenance import RunRecord

console = Console()


def note(message: str) -> None:
    """One dim line: what fewrec changed or assumed about this dataset."""
    console.print(message, style="dim", highlight=False, markup=False, soft_wrap=True)


def progress_line(message: str) -> None:
    """One dim progress line of a long run (rich markup allowed)."""
    console.print(f"[dim]{message}[/]", highlight=False)


def terminate(signum: int, frame: object) -> None:
    """SIGTERM (`kill`, a scheduler's time limit, a stopping container) stops a run the way
    Ctrl-C does: eval keeps the methods it finished and marks results.json incomplete."""
    raise KeyboardInterrupt


def load_settings(
    config: Path | None, dataset: str | None = None, fmt: str | None = None, duplicates: str | None = None
) -> Settings:
    """Settings from the config file, with the dataset options of the command line on top."""
    overrides: dict = {}
    if dataset is not None:
        overrides["dataset"] = dataset
    if fmt is not None and fmt != "auto":
        overrides["dataset_format"] = fmt
    if duplicates is not None:
        from fewrec.data.loaders import DUPLICATES

        if duplicates not in DUPLICATES:
            raise FewrecError(f"unknown --duplicates {duplicates!r}; choose {', '.join(DUPLICATES)}")
        overrides["duplicates"] = duplicates
    return Settings.load(config, **overrides)


def with_split_options(
    settings: Settings, protocol: str | None, ties: str | None, test_cut: str | None, valid_cut: str | None
) -> Settings:
    """Apply --protocol/--ties/--test-cut/--valid-cut, naming the allowed values on a bad one."""
    from fewrec.data.split import PROTOCOLS, TIE_ORDERS

    update: dict = {}
    if protocol is not None:
        if protocol not in PROTOCOLS:
            raise FewrecError(f"unknown --protocol {protocol!r}; choose {' or '.join(PROTOCOLS)}")
        update["protocol"] = protocol
    if ties is not None:
        if ties not in TIE_ORDERS:
            raise FewrecError(f"unknown --ties {ties!r}; choose {' or '.join(TIE_ORDERS)}")
        update["ties"] = ties
    for key, value in (("test_cut", test_cut), ("valid_cut", valid_cut)):
        if value is not None:
            update[key] = value
    if (test_cut or valid_cut) and (protocol or settings.split.protocol) != "temporal":
        raise FewrecError("--test-cut and --valid-cut apply to --protocol temporal only")
    if update:
        settings.split = settings.split.model_copy(update=update)
    return settings


def load_split(settings: Settings) -> LeaveOneOutSplit:
    """The dataset the settings name, split by their protocol (cached under settings.cache_dir)."""
    from fewrec.data import load_dataset

    return load_dataset(
        settings.dataset, settings.dataset_format, split=settings.split, cache_dir=settings.cache_dir,
        **settings.loader_options,
    )  # fmt: skip


def build_pipeline(
    settings: Settings, suggest_tune: bool = False, announce: bool = True, **options: Any
) -> Pipeline:
    """The pipeline over the dataset the settings name (`options`: Pipeline's keywords). It
    fits a copy of the settings to what the dataset carries (titles, real times) and uses its
    tuned weights; each change is one dim line (see fewrec/state.py)."""
    from fewrec.agent.pipeline import Pipeline

    pipeline = Pipeline(settings, load_split(settings), say=note, **options)
    settings, status = pipeline.settings, pipeline.tuned_status
    if status == "tuned" and announce:
        note(pipeline.weights_from)
    elif status == "none" and suggest_tune and settings.dataset_ident != "bundled":
        # The default weights were tuned on the bundled data only.
        note(
            f"no tuned weights for this dataset ({settings.split.protocol} protocol): the defaults are "
            f"used; `fewrec tune --dataset {settings.dataset}` chooses them on its validation targets"
        )
    return pipeline


def check_ray(address: str | None, workers: int | None = None) -> None:
    """A --ray address where nothing answers, or a bad --ray-workers, fails before minutes of
    fitting, not after."""
    if address is None and workers is not None:
        raise FewrecError("--ray-workers goes with --ray")
    if workers is not None and workers < 1:
        raise FewrecError("--ray-workers must be 1 or more")
    if address is not None:
        from fewrec.distributed import check_address

        check_address(address)


@contextlib.contextmanager
def ray_pool(address: str | None, workers: int | None) -> Iterator[Any]:
    """A RayPool on the cluster `--ray` names (None without --ray); left again afterwards.
    The options were checked by `check_ray` before any data was loaded."""
    if address is None:
        yield None
        return
    from fewrec.distributed import RayPool, connect, shutdown

    try:
        note(connect(address, say=note))
        with contextlib.suppress(ValueError):  # ray.init installs its own SIGTERM handler
            signal.signal(signal.SIGTERM, terminate)
        with RayPool(workers) as pool:
            note(f"{pool.workers} Ray worker(s) receive each fitted retriever once")
            yield pool
    finally:
        shutdown()


def int_list(text: str | None, what: str) -> list[int]:
    """Comma-separated integers of an option (`what` names it in the error)."""
    if not text:
        return []
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise FewrecError(f"{what} expects comma-separated integers, got {text!r}") from exc


def float_list(text: str, what: str) -> list[float]:
    """Comma-separated numbers of an option (`what` names it in the error)."""
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise FewrecError(f"{what} expects comma-separated numbers, got {text!r}") from exc


def check_split(split: str) -> None:
    """--split names one of the two held-out targets an evaluation can score."""
    from fewrec.eval.runner import EvalError

    if split not in ("valid", "test"):
        raise EvalError(f"--split must be 'valid' or 'test', got {split!r}")


def default_run_dir(root: Path = Path("runs")) -> Path:
    """`--out`'s default: a folder under runs/ named by the time (a suffix when taken)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = root / stamp
    n = 1
    while path.exists():
        n += 1
        path = root / f"{stamp}-{n}"
    return path


def publish_block(
    readme: Path | None, run: RunRecord, section: Callable[[Path], str], markers: tuple[str, str], what: str,
    say: Callable[[str], None] = console.print,
) -> None:  # fmt: skip
    """An evaluation's README block, rewritten only after a complete run (else one dim line says
    why not; the run's files are written either way); `what` names the block in the last line."""
    from fewrec.eval.report import publish

    if readme is not None and not run.complete:
        note(f"{readme} is not updated: the run did not finish (its files are written)")
    elif readme is not None:
        publish(readme, section(readme), markers, run.provenance, run.complete)
        say(f"updated the {what} of {readme}")


def exit_if_interrupted(complete: bool) -> None:
    """A run stopped by Ctrl-C or SIGTERM exits 130, as a shell reports Ctrl-C, after its files
    are written."""
    if not complete:
        raise typer.Exit(130)
