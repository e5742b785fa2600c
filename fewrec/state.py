"""Per-dataset state: settings fitted to what a dataset carries, and its tuned fusion weights.

Every dataset keeps its own state under `Settings.data_dir` (see docs/DESIGN.md, "Per-dataset
state"): its content index is its own Chroma collection (`Settings.collection_name`), and the
weights `fewrec tune` chooses for it are kept in `Settings.tuned_path` and used by `fewrec eval`,
`recommend` and `chat` on that dataset unless the settings name weights themselves.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from fewrec.config import Settings
from fewrec.data.files import write_atomically
from fewrec.data.split import LeaveOneOutSplit
from fewrec.data.traits import has_titles

log = logging.getLogger(__name__)

# A decay this slow is none at all: over 10^8 "seconds" (the most a position can be) a pair
# keeps exp(-10^8 / 8.64·10^16) of its weight, 1 to nine digits.
ORDER_ONLY_TAU_DAYS = 1e12


def fit_to_data(
    settings: Settings, split: LeaveOneOutSplit, say: Callable[[str], None] | None = None
) -> list[str]:
    """Change `settings.retrieval` (in place) for what `split` lacks, one line per change:
    - no titles: the content source is left out (nothing worth embedding, no index is built);
    - no real times: the time-aware sources use the order only (no decay; the split scores
      every user as of its last timestamp, see `LeaveOneOutSplit.reference_times`).
    Each line goes to `say` (default: a logged warning) and is returned."""
    say = say or log.warning
    notes: list[str] = []
    retrieval = settings.retrieval
    needing = [name for name in retrieval.active if retrieval.source(name).needs_content]
    if needing and not has_titles(split.catalog):
        retrieval.sources = {
            **retrieval.sources,
            **{name: retrieval.source(name).with_params(enabled=False) for name in needing},
        }
        skipped = " and ".join(needing)
        notes.append(
            f"{split.name}: the items have no titles (they are their ids), so the {skipped} source"
            f"{'s are' if len(needing) > 1 else ' is'} skipped and no content index is built"
        )
    timed = [name for name in retrieval.active if retrieval.source(name).time_aware]
    if timed and not split.has_times:
        retrieval.sources = {
            **retrieval.sources,
            **{name: retrieval.source(name).with_params(tau_days=ORDER_ONLY_TAU_DAYS) for name in timed},
        }
        what = (
            "every interaction has the same timestamp"
            if split.time_kind == "none"
            else "the timestamps are positions, not dates (all below 10^8, i.e. before 1973)"
        )
        verb = "uses" if len(timed) == 1 else "use"
        notes.append(f"{split.name}: {what}, so {' and '.join(timed)} {verb} the order of interactions only")
    for note in notes:
        say(note)
    return notes


# ---------------------------------------------------------------------------- tuned weights
TunedStatus = Literal["tuned", "configured", "none"]


def tuned_key(settings: Settings) -> str:
    """What tuned weights were chosen for, as one readable key: weights chosen under another
    protocol, tie order, filtering, source list, source configs or content model are not used."""
    split = settings.split
    ties = split.ties if split.ties == "id" else f"{split.ties}:{split.tie_seed}"
    parts = [
        split.protocol, f"ties={ties}", f"min_count={split.min_count}", f"min_rating={split.min_rating}",
        f"holdout={split.holdout}", f"sources={','.join(sorted(settings.retrieval.active))}",
        f"configs={configs_digest(settings)}", settings.embedding_key,
    ]  # fmt: skip
    if split.protocol == "temporal":
        parts.insert(1, f"cuts={split.test_cut},{split.valid_cut}")
    return "|".join(parts)


def configs_digest(settings: Settings) -> str:
    """10 hex digits of the enabled sources' hyper-parameters (their weights and grids left
    out: weights are what tuning chooses) and the seed they are fitted with."""
    retrieval = settings.retrieval
    facts = {name: retrieval.source(name).params() for name in sorted(retrieval.active)}
    text = json.dumps({"sources": facts, "seed": retrieval.seed}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):  # missing or damaged: as if never tuned
        return {}
    return data if isinstance(data, dict) else {}


def load_tuned(settings: Settings, say: Callable[[str], None] | None = None) -> dict[str, Any] | None:
    """The tuned entry for exactly these settings' key (`tuned_key`), or None. When the file
    holds weights for the same protocol under another key (another source list, tie order,
    filtering, or an older fewrec's key), `say` is told in one line why they are not used;
    the file is left as it is."""
    data = _read(settings.tuned_path)
    entry = data.get(tuned_key(settings))
    if isinstance(entry, dict) and isinstance(entry.get("weights"), dict):
        return entry
    protocol = settings.split.protocol
    others = [key for key in data if key.split("|", 1)[0] == protocol]
    if others and say is not None:
        say(
            f"tuned weights in {settings.tuned_path} were chosen for other settings ({others[0]}), not for "
            f"these ({tuned_key(settings)}): not used; `fewrec tune` chooses them for these"
        )
    return None


def save_tuned(settings: Settings, weights: dict[str, float], **facts: Any) -> Path:
    """Keep `weights` as this dataset's tuned weights (for its protocol and embedding model);
    other entries in the file stay. Written atomically: a crash keeps the previous file."""
    path = settings.tuned_path
    data = _read(path)
    data[tuned_key(settings)] = {
        "weights": {name: float(value) for name, value in weights.items()},
        "dataset": settings.dataset_ident,
        "protocol": settings.split.protocol,
        "embedding": settings.embedding_key,
        "tuned_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **facts,
    }
    write_atomically(path, json.dumps(data, indent=2, sort_keys=True).encode())
    return path


def apply_tuned(settings: Settings, say: Callable[[str], None] | None = None) -> TunedStatus:
    """Use this dataset's tuned weights, unless the settings name a weight themselves (a TOML
    file, FEWREC_RETRIEVAL__SOURCES__EASE__WEIGHT, keyword arguments): 'tuned' when applied,
    'configured' when the configured ones win, 'none' when the dataset has none for these
    settings (`load_tuned`). Sources that were not tuned keep their configured weight."""
    if settings.retrieval.weights_configured:
        return "configured"
    entry = load_tuned(settings, say)
    if entry is None:
        return "none"
    tuned = {k: float(v) for k, v in entry["weights"].items()}
    settings.retrieval = settings.retrieval.with_weights(tuned)
    return "tuned"


def describe_weights(settings: Settings, status: TunedStatus) -> str:
    """One line for a run's notes and results.json: where its fusion weights came from, and
    what they are."""
    weights = ", ".join(f"{k} {v:g}" for k, v in settings.retrieval.weights.items())
    if status == "tuned":
        entry = load_tuned(settings) or {}
        return (
            f"fusion weights: tuned for this dataset on this machine ({settings.tuned_path}, "
            f"key {tuned_key(settings)}, tuned at {entry.get('tuned_at', '?')}): {weights}"
        )
    if status == "configured":
        return f"fusion weights: named by the settings: {weights}"
    return f"fusion weights: the defaults (tuned on the bundled data): {weights}"
