"""SASRec (Kang & McAuley 2018): a small self-attentive next-item model trained on CPU.

It complements the closed-form sources (on validation it adds about +0.01 NDCG@10 to the
fusion). Training takes minutes on two cores, so fitted weights are cached on disk, keyed by
the training data and every hyper-parameter; a second fit on the same data loads them.
Needs torch (the 'embed' extra).

Training stops by rules on data alone, so the model is the same on any machine at any load:
after `epochs`, or earlier when early stopping says so (`patience`, `min_delta`): on the
training loss, or, with `validation_users` > 0, on the NDCG@10 of that many users' last
*training* item, held out of training (so nothing after a split's cut is read), keeping the
best epoch's weights. A wall-clock budget (`budget_s`) is an opt-in for users; a run it cut
says so in its notes, since its model then depends on the machine's speed and load.
A cached model is used only when its record names the same key (this module's code, every
setting, the data) and the hash of the weights beside it. A fit that finds no cached model but
the last training of the same data and settings with fewer epochs (the SASRec baseline's grid,
16 epochs then 32) goes on from there, to the same bits as training from the start.
Batches are cut from a seeded shuffle of the training windows. When the windows are mostly
short (a mean under half of `max_len` + 1, as on Amazon-like data where most users have a few
items), each batch is cut from windows of similar length instead, so that a batch is not padded
to the few long windows it holds: on data of Amazon Beauty's shape, mixed batches spent 85% of
their positions on padding. On such data a batch also holds at most `batch_size` mean windows'
items (`batch_plan`), dropout draws its masks from the run's numpy generator, AdamW runs fused,
and with `validation_users` left to the data (None) early stopping reads 1,000 held-out users'
NDCG@10, not the
loss: on data of Amazon Beauty's shape an epoch 1.5× faster, and 15 epochs instead of 32.
Where windows are mostly long (the bundled MovieLens: 14% padding) batches stay mixed and none
of that applies: the weights stay those of the published figures.
A progress bar shows epoch, loss, validation NDCG and ETA, and a one-line
note says that it trains and for how long at most. Above `max_interactions` training
interactions it declines to fit on a CPU (a CUDA GPU trains it instead).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import io
import itertools
import json
import logging
import os
import pickle
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from fewrec.data.errors import FewrecError
from fewrec.data.files import write_atomically
from fewrec.retrieval.base import FitData, ScoringContext, SourceSkipped

log = logging.getLogger(__name__)


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise FewrecError(
            "the 'sasrec' source needs torch; install fewrec with the 'embed' extra "
            "(pip install 'fewrec[embed]') or set enabled = false in [retrieval.sources.sasrec]"
        ) from exc
    return torch


@contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    """Run torch on `count` threads for a while. Scoring one user is a few tiny matrix products:
    a second thread only adds hand-offs, and its spinning slows numpy's threads down (with the
    ranking changes of the same commit, `fewrec bench` retrieval p50 went 15.5 → 7.8 ms here)."""
    torch = _torch()
    previous = torch.get_num_threads()
    if previous != count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        if previous != count:
            torch.set_num_threads(previous)


@functools.cache
def _code_version() -> str:
    """A hash of this module's source: a change to the model or its training invalidates every
    cached model trained by the old code."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def _file_sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def plateau_epoch(losses: list[float], patience: int, min_delta: float) -> int | None:
    """The number of epochs after which training stops because the loss has not improved on
    its best by more than `min_delta` (relative) for `patience` epochs; None if it never does."""
    if patience <= 0:
        return None
    best, stale = float("inf"), 0
    for epoch, loss in enumerate(losses, start=1):
        if loss < best * (1.0 - min_delta):
            best, stale = loss, 0
        else:
            stale += 1
            if stale >= patience:
                return epoch
    return None


def _hold_out_last(
    sequences: list[np.ndarray], users: int, seed: int = 0
) -> tuple[list[np.ndarray], tuple[list[np.ndarray], np.ndarray]]:
    """Early stopping's validation: for a seeded sample of `users` users with 3 items or more,
    their last training item is held out of training (it still comes before every split
    target) and becomes the item to predict from the rest. Item indices stay 1-based."""
    eligible = np.flatnonzero(np.array([len(s) >= 3 for s in sequences], dtype=bool))
    chosen = np.sort(np.random.default_rng(seed).choice(eligible, min(users, len(eligible)), replace=False))
    held = set(chosen.tolist())
    training = [s[:-1] if row in held else s for row, s in enumerate(sequences)]
    histories = [sequences[row][:-1] for row in chosen]
    targets = np.array([sequences[row][-1] for row in chosen], dtype=np.int64)
    return training, (histories, targets)


def _windows(sequences: list[np.ndarray], window: int) -> list[np.ndarray]:
    """Each sequence cut into windows of at most `window` items from its end, so that every
    training target is used once an epoch."""
    return [s[max(0, end - window) : end] for s in sequences for end in range(len(s), 1, -(window - 1))]


# Where windows are mostly short (`by_length`) and `validation_users` is None, early stopping reads
# this many users' held-out items, not the training loss: on data of Amazon Beauty's shape the
# validation NDCG@10 peaks near epoch 10 of 32 while the loss still falls by 2% an epoch.
SHORT_WINDOW_VALIDATION_USERS = 1000


def by_length(lengths: np.ndarray) -> bool:
    """Whether batches are cut from windows of similar length: when the mean window is under half
    the longest, a mixed batch (padded to its longest window, nearly always a full one) is mostly
    padding. A rule on the data alone, so the weights stay the same on any machine."""
    return len(lengths) > 0 and 2 * float(np.mean(lengths)) < float(np.max(lengths))


@dataclass(frozen=True)
class BatchPlan:
    """How an epoch's batches are cut and trained, decided from the windows' lengths alone."""

    by_length: bool  # batches cut from windows of similar length (see `epoch_batches`)
    cap: int | None = None  # the most items (rows × its longest window) a batch by length holds
    numpy_dropout: bool = False  # dropout masks drawn from the run's numpy generator
    fused_adam: bool = False  # AdamW's fused CPU kernel, not one tensor at a time


def batch_plan(lengths: np.ndarray, batch_size: int) -> BatchPlan:
    """Mixed batches, as the bundled data's published weights were trained, unless `by_length`
    says the windows are mostly short. Then a batch holds at most as many items as `batch_size`
    windows of the mean length (the sampled softmax of a batch of 128 full windows, 6,400
    positives against nearly the whole catalogue, cost as much as 50 batches of short ones), and
    two steps that cost more than the model's own arithmetic on batches this small are replaced:
    dropout's masks (torch draws a Bernoulli mask value by value, 3× slower here than 16 bits
    a value from numpy) and AdamW's per-tensor updates (its fused kernel: 3× faster a step)."""
    if not by_length(lengths):
        return BatchPlan(False)
    cap = int(np.ceil(batch_size * float(np.mean(lengths))))
    return BatchPlan(True, cap, numpy_dropout=True, fused_adam=True)


def epoch_batches(
    order: np.ndarray, batch_size: int, rng: np.random.Generator, lengths: np.ndarray | None = None,
    pool: int = 64, cap: int | None = None,
) -> list[np.ndarray]:  # fmt: skip
    """An epoch's batches, as indices into the windows, from their shuffled `order`. With `lengths`,
    each run of `pool` batches of that order is sorted by window length (stably, so the shuffle
    breaks ties) and cut into batches, whose order `rng` then shuffles: every batch is nearly
    without padding, and which windows meet in a batch still changes from epoch to epoch. With
    `cap` too, a batch holds fewer than `batch_size` windows where its rows × its longest window
    would pass `cap` (at least one). Without `lengths`, consecutive runs of the order, and `rng`
    is not read."""
    if lengths is None:
        return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    batches: list[np.ndarray] = []
    for start in range(0, len(order), pool * batch_size):
        part = order[start : start + pool * batch_size]
        part = part[np.argsort(lengths[part], kind="stable")]
        if cap is None:
            batches += [part[offset : offset + batch_size] for offset in range(0, len(part), batch_size)]
            continue
        offset = 0
        while offset < len(part):
            rows = min(batch_size, len(part) - offset)
            # The part is sorted: a batch's longest window is its last.
            while rows > 1 and rows * int(lengths[part[offset + rows - 1]]) > cap:
                rows -= 1
            batches.append(part[offset : offset + rows])
            offset += rows
    return [batches[i] for i in rng.permutation(len(batches))]


def _left_padded(histories: list[np.ndarray], max_len: int, shift: int) -> np.ndarray:
    """The last `max_len` items of each history, + `shift` (item index → the net's 1-based
    ids), right-aligned in a (len(histories), max_len) array padded with 0 on the left."""
    x = np.zeros((len(histories), max_len), dtype=np.int64)
    for row, history in enumerate(histories):
        recent = np.asarray(history[-max_len:], dtype=np.int64) + shift
        x[row, max_len - len(recent) :] = recent
    return x


def _validation_ndcg(
    net: Any, histories: list[np.ndarray], targets: np.ndarray, max_len: int, device: str
) -> float:
    """Mean NDCG@10 of the held-out items (1-based) over all items, each history's own items
    excluded; ties count against the target."""
    torch = _torch()
    was_training = net.training
    net.eval()
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(histories), 256):
            part = histories[start : start + 256]
            x = _left_padded(part, max_len, shift=0)  # already 1-based
            scores = net.logits(net(torch.from_numpy(x).to(device))[:, -1]).float().cpu().numpy()
            for row, history in enumerate(part):
                scores[row, np.asarray(history, dtype=np.int64) - 1] = -np.inf
            target = targets[start : start + len(part)] - 1
            mine = scores[np.arange(len(part)), target][:, None]
            rank = (scores >= mine).sum(axis=1) - 1  # 0-based, ties against the target
            total += float(np.where(rank < 10, 1.0 / np.log2(rank + 2.0), 0.0).sum())
    net.train(was_training)
    return total / max(len(histories), 1)


def _build_net(n_items: int, dim: int, max_len: int, layers: int, heads: int, dropout: float) -> Any:
    torch = _torch()
    nn = torch.nn

    class SASRecNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.item = nn.Embedding(n_items + 1, dim, padding_idx=0)  # index 0 = padding
            self.pos = nn.Embedding(max_len, dim)
            self.drop = nn.Dropout(dropout)
            layer = nn.TransformerEncoderLayer(
                dim, heads, dim * 4, dropout, batch_first=True, norm_first=True, activation="gelu"
            )
            self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(dim)
            nn.init.normal_(self.item.weight, std=0.02)
            nn.init.normal_(self.pos.weight, std=0.02)

        def forward(self, x: Any) -> Any:  # x: (batch, length) item index + 1, left-padded with 0
            length = x.shape[1]
            h = self.item(x) * (dim**0.5) + self.pos.weight[-length:][None]
            causal = torch.triu(torch.ones(length, length, dtype=torch.bool, device=x.device), 1)
            h = self.encoder(self.drop(h), mask=causal, src_key_padding_mask=x == 0)
            return self.norm(h)

        def logits(self, h: Any) -> Any:
            return h @ self.item.weight[1:].T

    return SASRecNet()


@functools.cache
def _numpy_dropout() -> type:
    """nn.Dropout with its mask drawn from a numpy generator: 16 random bits a value, kept below
    round((1 - p) · 2¹⁶). Made on first use (torch is optional)."""
    torch = _torch()

    class NumpyDropout(torch.nn.Module):
        def __init__(self, p: float, rng: np.random.Generator) -> None:
            super().__init__()
            self.p, self.rng = p, rng
            self.threshold = round((1.0 - p) * 65536)

        def forward(self, x: Any) -> Any:
            if not self.training or self.p == 0:
                return x
            bits = np.frombuffer(self.rng.bytes(2 * x.numel()), dtype=np.uint16).reshape(tuple(x.shape))
            keep = torch.from_numpy(bits < self.threshold).to(device=x.device, dtype=x.dtype)
            return x * keep.mul_(1.0 / (1.0 - self.p))

    return NumpyDropout


@contextmanager
def _dropout_from(net: Any, rng: np.random.Generator | None) -> Iterator[None]:
    """With `rng`, the net's dropout modules draw their masks from it for a while (the attention
    weights' dropout, inside torch's attention, stays torch's); the modules themselves come back
    after, so the net's state and class are what they were. Without `rng`, nothing changes."""
    if rng is None:
        yield
        return
    torch = _torch()
    swapped = [
        (parent, name, child)
        for parent in net.modules()
        for name, child in parent.named_children()
        if type(child) is torch.nn.Dropout
    ]
    for parent, name, child in swapped:
        setattr(parent, name, _numpy_dropout()(child.p, rng))
    try:
        yield
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)


def _batch_loss(
    net: Any, batch: list[np.ndarray], rng: np.random.Generator, n_items: int, negatives: int, device: str
) -> tuple[Any, int]:
    """The sampled-softmax loss of one batch of chunks, and its number of positives."""
    torch = _torch()
    length = max(len(c) for c in batch)
    x = np.zeros((len(batch), length), dtype=np.int64)
    for row, chunk in enumerate(batch):
        x[row, length - len(chunk) :] = chunk
    xt = torch.from_numpy(x).to(device)
    inputs, targets = xt[:, :-1], xt[:, 1:]
    hidden = net(inputs)
    valid = (targets > 0) & (inputs > 0)
    positives = targets[valid] - 1
    # Sampled softmax: the batch's positives plus shared uniform negatives.
    sampled = torch.from_numpy(rng.integers(0, n_items, negatives)).to(device)
    candidates, inverse = torch.unique(torch.cat([positives, sampled]), return_inverse=True)
    logits = hidden[valid] @ net.item.weight[candidates + 1].T
    return torch.nn.functional.cross_entropy(logits, inverse[: len(positives)]), len(positives)


@dataclass
class _TrainingRun:
    """One seed's training: the net, its optimiser and sampler, and how far it has got."""

    net: Any
    optimiser: Any
    rng: np.random.Generator
    chunks: list[np.ndarray]
    lengths: np.ndarray | None  # the windows' lengths when batches are cut by length, else None
    plan: BatchPlan
    n_items: int
    device: str
    bar: Any
    budget_s: float | None
    started: float
    losses: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)  # validation NDCG@10 after each full epoch
    best_state: dict[str, Any] | None = None
    stopped: str | None = None
    done_steps: int = 0  # the bar counts nothing when it is disabled
    epochs_done: float = 0.0  # batches run, each as its epoch's share (batches by length vary)
    torch_state: Any = None  # torch's generator (dropout) where the run paused


# Trainings that ran out of epochs, by the key of everything their weights depend on but the
# number of epochs: a fit of the same training with more epochs (the SASRec baseline's grid, 16
# epochs then 32) goes on from where one stopped, to the same bits as training from the start.
# The most recent only: it holds a net, its optimiser's state and its training windows.
_PAUSED: dict[str, _TrainingRun] = {}
_PAUSED_KEEP = 1


class SASRec:
    """Next-item transformer over the training sequences; scores = last position's logits,
    max-normalised per user and averaged over `seeds`."""

    name = "sasrec"
    time_aware = False

    def __init__(
        self, dim: int = 64, max_len: int = 50, layers: int = 2, heads: int = 1, dropout: float = 0.2,
        epochs: int = 32, batch_size: int = 128, learning_rate: float = 2e-3, negatives: int = 1000,
        seeds: tuple[int, ...] = (0,), threads: int | None = None, cache_dir: Path | None = None,
        progress: bool = True, budget_s: float | None = None, patience: int = 3,
        min_delta: float = 1e-3, max_interactions: int | None = 1_000_000,
        notify: Callable[[str], None] | None = None, validation_users: int | None = None,
    ) -> None:  # fmt: skip
        self.params = {
            "dim": dim, "max_len": max_len, "layers": layers, "heads": heads, "dropout": dropout,
            "epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
            "negatives": negatives,
        }  # fmt: skip
        self.seeds = tuple(seeds)
        self.threads = threads or os.cpu_count() or 1
        self.cache_dir = cache_dir
        self.progress = progress
        self.budget_s = budget_s if budget_s and budget_s > 0 else None
        self.patience, self.min_delta = patience, min_delta
        self.max_interactions = max_interactions
        # > 0: that many users' last training item is held out of training and early stopping
        # reads their NDCG@10 after each epoch (the best epoch's weights are kept); 0: the
        # training loss's plateau decides; None: the data decides (SHORT_WINDOW_VALIDATION_USERS
        # where windows are mostly short, else the loss).
        self.validation_users = validation_users
        self.notify = notify or log.warning
        self.nets: list[Any] = []
        self.runs: list[dict[str, Any]] = []  # per seed: epochs trained, why it stopped, seconds

    def _key(self, data: FitData, seed: int, any_epochs: bool = False) -> str:
        """What the weights depend on: this module's code, every hyper-parameter and stopping
        rule (a time budget too: a run it cut is only reused under the same budget), the seed
        and the training data; with `any_epochs`, all that but the number of epochs (the key of a
        training that a fit with more epochs may go on with)."""
        digest = hashlib.sha256()
        facts: dict[str, Any] = {
            **self.params, "seed": seed, "n_items": data.n_items, "code": _code_version(),
            "threads": self.threads, "patience": self.patience, "min_delta": self.min_delta,
            "budget_s": self.budget_s, "validation_users": self.validation_users,
        }  # fmt: skip
        if any_epochs:
            facts["epochs"] = None
        digest.update(json.dumps(facts, sort_keys=True).encode())
        digest.update(np.ascontiguousarray(data.users, dtype=np.int64).tobytes())
        digest.update(np.ascontiguousarray(data.items, dtype=np.int64).tobytes())
        return digest.hexdigest()[:24]

    def _train(
        self, sequences: list[np.ndarray], n_items: int, seed: int, budget_s: float | None = None,
        device: str = "cpu", validation: tuple[list[np.ndarray], np.ndarray] | None = None,
        paused: _TrainingRun | None = None,
    ) -> tuple[Any, dict[str, Any], _TrainingRun]:  # fmt: skip
        """The trained net, how training went (epochs, losses, why it stopped, seconds) and the
        run itself, paused. With `validation` (histories, held-out next items), each epoch ends
        with their NDCG@10; training stops when it has not improved for `patience` epochs, and the
        best epoch's weights are returned. With `paused` (the same training, fewer epochs, no time
        budget), training goes on from there."""
        torch = _torch()
        p = self.params
        window = p["max_len"] + 1
        if paused is None:
            started = time.perf_counter()
            torch.manual_seed(seed)
            rng = np.random.default_rng(seed)
            net = _build_net(n_items, p["dim"], p["max_len"], p["layers"], p["heads"], p["dropout"]).to(
                device
            )
            chunks = _windows(sequences, window)
            lengths = np.array([len(c) for c in chunks], dtype=np.int64)
            plan = batch_plan(lengths, p["batch_size"])
            fused = {"fused": True} if plan.fused_adam else {}
            optimiser = torch.optim.AdamW(net.parameters(), lr=p["learning_rate"], weight_decay=0.0, **fused)
            run = _TrainingRun(
                net, optimiser, rng, chunks, lengths if plan.by_length else None, plan, n_items, device, None,
                budget_s, started,
            )  # fmt: skip
        else:
            run = paused
            run.started = time.perf_counter() - run.started  # it held the seconds trained so far
            torch.set_rng_state(run.torch_state)
        steps = -(-len(run.chunks) // p["batch_size"])
        if run.plan.cap is not None:  # how many, only for the bar: each epoch's count varies a little
            steps = len(epoch_batches(np.arange(len(run.chunks)), p["batch_size"], np.random.default_rng(0),
                                      run.lengths, cap=run.plan.cap))  # fmt: skip
        run.bar = tqdm(
            total=p["epochs"] * steps, initial=min(run.done_steps, p["epochs"] * steps), unit="batch",
            desc=f"SASRec seed {seed}, epoch {len(run.losses) + 1}/{p['epochs']}",
            disable=not self.progress, mininterval=1.0,
        )  # fmt: skip
        for epoch in range(len(run.losses), p["epochs"] if run.stopped is None else 0):
            run.net.train()
            run.bar.set_description(f"SASRec seed {seed}, epoch {epoch + 1}/{p['epochs']}")
            with _dropout_from(run.net, run.rng if run.plan.numpy_dropout else None):
                total, count = self._train_epoch(run)
            if run.stopped == "budget":
                if count:  # a partial epoch's loss still says where training got to
                    run.losses.append(total / count)
                break
            run.losses.append(total / max(count, 1))
            if self._stops_after_epoch(run, validation):
                break
        run.bar.close()
        run.torch_state = torch.get_rng_state()
        info = self._run_info(run, validation)
        # A copy: the run itself stays as its last epoch left it, to go on from.
        net = copy.deepcopy(run.net)
        if run.best_state is not None:
            net.load_state_dict(run.best_state)
        net.eval()
        net.to("cpu")  # scored on the CPU, one thread (see `score`)
        run.started = time.perf_counter() - run.started
        return net, info, run

    def _train_epoch(self, run: _TrainingRun) -> tuple[float, int]:
        """One pass over the chunks in a random order: (summed loss, positives) of the batches it
        ran. The time budget may end it early (`run.stopped` says so)."""
        p = self.params
        order = run.rng.permutation(len(run.chunks))
        total, count = 0.0, 0
        batches = epoch_batches(order, p["batch_size"], run.rng, run.lengths, cap=run.plan.cap)
        for indices in batches:
            batch = [run.chunks[j] for j in indices]
            loss, positives = _batch_loss(run.net, batch, run.rng, run.n_items, p["negatives"], run.device)
            run.optimiser.zero_grad()
            loss.backward()
            run.optimiser.step()
            total += float(loss.detach()) * positives
            count += positives
            run.bar.update(1)
            run.done_steps += 1
            run.epochs_done += 1.0 / len(batches)
            elapsed = time.perf_counter() - run.started
            if run.budget_s is not None and elapsed > run.budget_s:
                run.stopped = "budget"
                break
            if run.done_steps % 20 == 0:
                left = (
                    "" if run.budget_s is None else f", budget {max(0.0, run.budget_s - elapsed):.0f} s left"
                )
                run.bar.set_postfix_str(f"loss {total / max(count, 1):.3f}{left}", refresh=False)
        return total, count

    def _stops_after_epoch(
        self, run: _TrainingRun, validation: tuple[list[np.ndarray], np.ndarray] | None
    ) -> bool:
        """Scores a full epoch (validation NDCG@10, keeping the best weights) and applies the
        plateau rule: to that score with `validation`, else to the training loss."""
        if validation is None:
            if plateau_epoch(run.losses, self.patience, self.min_delta) is None:
                return False
            run.stopped = "plateau"
            return True
        run.scores.append(_validation_ndcg(run.net, *validation, self.params["max_len"], run.device))
        run.bar.set_postfix_str(
            f"loss {run.losses[-1]:.3f}, validation NDCG@10 {run.scores[-1]:.4f}", refresh=False
        )
        if run.scores[-1] >= max(run.scores):
            run.best_state = {k: v.detach().clone() for k, v in run.net.state_dict().items()}
        # Higher is better: the plateau rule reads the negated curve.
        if plateau_epoch([-v for v in run.scores], self.patience, self.min_delta) is None:
            return False
        run.stopped = "plateau"
        return True

    def _run_info(
        self, run: _TrainingRun, validation: tuple[list[np.ndarray], np.ndarray] | None
    ) -> dict[str, Any]:
        info = {
            # Fractional when the budget stopped it inside an epoch.
            "epochs_trained": round(run.epochs_done, 2), "epochs": self.params["epochs"],
            "stopped": run.stopped, "losses": [round(v, 5) for v in run.losses],
            "seconds": round(time.perf_counter() - run.started, 1), "budget_s": self.budget_s,
            "patience": self.patience, "min_delta": self.min_delta, "device": run.device,
            "batches": "by length" if run.lengths is not None else "mixed",
        }  # fmt: skip
        if validation is not None:
            info["validation_ndcg"] = [round(v, 5) for v in run.scores]
            info["validation_users"] = len(validation[1])
            info["best_epoch"] = int(np.argmax(run.scores)) + 1 if run.scores else None
        return info

    def fit(self, data: FitData) -> SASRec:
        torch = _torch()
        n_interactions = len(data.items)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cpu" and self.max_interactions is not None and n_interactions > self.max_interactions:
            raise SourceSkipped(
                f"sasrec skipped: {n_interactions:,} training interactions > "
                f"retrieval.sources.sasrec.max_interactions = {self.max_interactions:,} and no CUDA GPU; "
                "it is left out of the fusion, the other sources keep their weights. Raise the setting to "
                "train it on the CPU anyway (within retrieval.sources.sasrec.budget_s)."
            )
        torch.set_num_threads(self.threads)
        users, items = np.asarray(data.users), np.asarray(data.items)
        bounds = np.flatnonzero(np.r_[True, users[1:] != users[:-1], True])
        sequences = [items[a:b] + 1 for a, b in itertools.pairwise(bounds)]
        p = self.params
        validation = None
        held_out = self.validation_users
        if held_out is None:
            short = by_length(np.array([len(w) for w in _windows(sequences, p["max_len"] + 1)]))
            held_out = SHORT_WINDOW_VALIDATION_USERS if short else 0
        if held_out > 0:
            sequences, validation = _hold_out_last(sequences, held_out)
        self.n_items = data.n_items
        self.nets, self.runs = [], []
        deadline = None if self.budget_s is None else time.perf_counter() + self.budget_s
        for position, seed in enumerate(self.seeds):
            key = self._key(data, seed)
            path = self.cache_dir / f"sasrec-{key}.pt" if self.cache_dir else None
            cached = self._load_cached(path, key, data.n_items) if path is not None else None
            if cached is not None:
                self.nets.append(cached[0])
                self.runs.append(cached[1])
                continue
            budget = None
            if deadline is not None:  # the seeds still to train share what is left
                budget = max(0.0, deadline - time.perf_counter()) / (len(self.seeds) - position)
            limit = (
                ""
                if budget is None
                else f", at most {budget:.0f} s (retrieval.sources.sasrec.budget_s: the result depends on "
                "the machine's speed and load)"
            )
            which = f" (seed {seed})" if len(self.seeds) > 1 else ""
            self.notify(
                f"SASRec{which}: training on {n_interactions:,} interactions ({device}), up to "
                f"{p['epochs']} epochs{limit}"
            )
            resumable = self._key(data, seed, any_epochs=True)
            paused = _PAUSED.pop(resumable, None)  # taken: no two fits go on with one run
            if paused is not None and (budget is not None or len(paused.losses) > p["epochs"]):
                paused = None
            net, info, run = self._train(sequences, data.n_items, seed, budget, device, validation, paused)
            if budget is None:  # a run the clock cut is not the start of any other
                _PAUSED[resumable] = run
                while len(_PAUSED) > _PAUSED_KEEP:
                    _PAUSED.pop(next(iter(_PAUSED)))
            if info["stopped"] is not None:
                plateau = "a validation plateau" if validation else "a training-loss plateau"
                why = (
                    "the time budget retrieval.sources.sasrec.budget_s: this model depends on the "
                    "machine's load"
                    if info["stopped"] == "budget"
                    else plateau
                )
                self.notify(
                    f"SASRec: stopped after {info['epochs_trained']:g}/{p['epochs']} epochs "
                    f"({why}, {info['seconds']:.0f} s)"
                )
            if path is not None:
                self._save(net, path, {**info, "key": key})
            self.nets.append(net)
            self.runs.append(info)
        return self

    def _load_cached(self, path: Path, key: str, n_items: int) -> tuple[Any, dict[str, Any]] | None:
        """The cached net and its record, or None (and a note) when the entry is absent, has no
        record, was made for another key, or its weights are not the ones the record vouches for."""
        if not path.exists():
            return None
        info = self._read_info(path)
        problem = None
        if info is None:
            problem = "it has no record of how it was trained"
        elif info.get("key") != key:
            problem = "its record was made for other code, settings or data"
        elif info.get("weights_sha256") != _file_sha256(path):
            problem = "its weights are not the ones its record vouches for"
        if problem is None:
            torch = _torch()
            p = self.params
            net = _build_net(n_items, p["dim"], p["max_len"], p["layers"], p["heads"], p["dropout"])
            try:
                net.load_state_dict(torch.load(path, weights_only=True))
            except (RuntimeError, OSError, ValueError, pickle.UnpicklingError, EOFError) as exc:
                problem = f"its weights cannot be read ({type(exc).__name__})"
            else:
                net.eval()
                if info.get("stopped") == "budget":
                    self.notify(
                        f"SASRec: cached weights were cut by the time budget after "
                        f"{info.get('epochs_trained'):g}/{p['epochs']} epochs"
                    )
                return net, {**info, "cached": True}
        self.notify(f"SASRec: the cached model {path.name} is not used ({problem}); training again")
        return None

    @staticmethod
    def _read_info(path: Path) -> dict[str, Any] | None:
        try:
            return json.loads(path.with_suffix(".json").read_text())
        except (OSError, ValueError):
            return None

    @staticmethod
    def _save(net: Any, path: Path, info: dict[str, Any]) -> None:
        """Weights first, then the record that vouches for them (with their hash): a crash
        between the two leaves weights without a record, which are never used."""
        torch = _torch()
        try:
            buffer = io.BytesIO()
            torch.save(net.state_dict(), buffer)
            weights = buffer.getvalue()
            write_atomically(path, weights)
            record = {**info, "weights_sha256": hashlib.sha256(weights).hexdigest()}
            write_atomically(path.with_suffix(".json"), json.dumps(record).encode())
        except (OSError, RuntimeError) as exc:  # a cache we cannot write only costs time later
            log.warning("could not cache SASRec weights at %s: %s", path, exc)

    def score(self, histories: list[np.ndarray], context: ScoringContext | None = None) -> np.ndarray:
        torch = _torch()
        max_len = self.params["max_len"]
        out = np.zeros((len(histories), self.n_items), dtype=np.float32)
        with _torch_threads(1), torch.no_grad():
            for net in self.nets:
                for start in range(0, len(histories), 256):
                    part = histories[start : start + 256]
                    x = _left_padded(part, max_len, shift=1)
                    scores = net.logits(net(torch.from_numpy(x))[:, -1]).numpy()
                    scale = np.abs(scores).max(axis=1, keepdims=True)
                    scores = scores / np.where(scale > 0, scale, 1.0)
                    empty = np.array([len(h) == 0 for h in part])
                    scores[empty] = 0.0
                    out[start : start + len(part)] += scores / len(self.nets)
        return out
