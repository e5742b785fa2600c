"""SASRec's training time on generated data, one epoch's batches planned three ways, interleaved
in one process so that all meet the same load: mixed (every batch padded to its longest window, the
code before batches were cut by length, and still the bundled data's), by length (each batch cut
from windows of similar length, the code before batches were capped), and what
fewrec/retrieval/sequential.py's `batch_plan` now gives data whose windows are mostly short
(by length, each batch capped at `batch_size` mean windows' items, dropout masks from numpy,
AdamW fused, early stopping on 1,000 held-out users' NDCG@10, timed with the epoch); and, with
--quality-epochs, SASRec's own validation NDCG@10 after at most that many epochs each way.

    python -m fewrec.bench.sasrec_training [--size 22000x12000x200000] [--epochs 2] [--rounds 2]
        [--kinds mixed,by-length,now] [--quality-epochs 0]

Prints the seconds per epoch, the load before and after, the losses and a hash of the weights of
each training: two trainings of one kind must give the same hash (the weights do not depend on
the load). Default size: Amazon Beauty's shape (22k users, 12k items, 200k interactions).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import itertools
import os
import time
from typing import Any

import numpy as np

from fewrec.retrieval import sequential
from fewrec.retrieval.sequential import SASRec


def _weights_hash(net: Any) -> str:
    digest = hashlib.sha256()
    for tensor in net.state_dict().values():
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()[:16]


def _sequences(data: Any) -> list[np.ndarray]:
    users, items = np.asarray(data.users), np.asarray(data.items)
    bounds = np.flatnonzero(np.r_[True, users[1:] != users[:-1], True])
    return [items[a:b] + 1 for a, b in itertools.pairwise(bounds)]


KINDS = ("mixed", "by-length", "now")


def _plan(kind: str, lengths: np.ndarray, batch_size: int) -> sequential.BatchPlan:
    if kind == "mixed":
        return sequential.BatchPlan(False)
    if kind == "by-length":
        return sequential.BatchPlan(True)
    return ORIGINAL_PLAN(lengths, batch_size)


ORIGINAL_PLAN = sequential.batch_plan


def _train(data: Any, epochs: int, kind: str) -> tuple[SASRec, Any, dict[str, Any]]:
    """One training under the default settings, batches planned as `kind` says (the rule itself is
    bypassed); "now" also stops as `fit` does on such data, on its held-out users' NDCG@10."""
    sequential.batch_plan = functools.partial(_plan, kind)
    try:
        model = SASRec(epochs=epochs, threads=1, progress=False, cache_dir=None)
        sequential._torch().set_num_threads(model.threads)
        sequences, validation = _sequences(data), None
        if kind == "now":
            sequences, validation = sequential._hold_out_last(
                sequences, sequential.SHORT_WINDOW_VALIDATION_USERS
            )
        net, info, _ = model._train(sequences, data.n_items, seed=0, validation=validation)
    finally:
        sequential.batch_plan = ORIGINAL_PLAN
    model.nets, model.runs, model.n_items = [net], [info], data.n_items
    return model, net, info


def main(argv: list[str] | None = None) -> None:
    from fewrec.data.split import leave_one_out
    from fewrec.data.synthetic import generate, to_dataset
    from fewrec.eval.baselines import validation_ndcg
    from fewrec.retrieval.fusion import fit_data

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="22000x12000x200000", help="USERSxITEMSxINTERACTIONS")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quality-epochs", type=int, default=0)
    parser.add_argument("--kinds", default=",".join(KINDS), help="which of mixed,by-length,now to time")
    args = parser.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    if not kinds or set(kinds) - set(KINDS):
        parser.error(f"--kinds: some of {','.join(KINDS)}")
    users, items, interactions = (int(v) for v in args.size.split("x"))
    split = leave_one_out(to_dataset(generate(users, items, interactions, seed=0), "synthetic"))
    data = fit_data(split, "test")
    lengths = np.array([len(s) for s in _sequences(data)])
    print(
        f"{split.n_users:,} users × {split.n_items:,} items × {len(data.items):,} training interactions "
        f"(after the 5-core filter); cores {os.cpu_count()}; mean history {lengths.mean():.1f}",
        flush=True,
    )
    seconds: dict[str, list[float]] = {kind: [] for kind in kinds}
    for _ in range(args.rounds):
        for kind in kinds:
            load = os.getloadavg()[0]
            started = time.perf_counter()
            _, net, info = _train(data, args.epochs, kind)
            spent = time.perf_counter() - started
            seconds[kind].append(spent / info["epochs_trained"])
            print(
                f"{kind:>9}: {spent / info['epochs_trained']:6.1f} s/epoch, load {load:.2f} → "
                f"{os.getloadavg()[0]:.2f}, losses {info['losses']}, weights {_weights_hash(net)}",
                flush=True,
            )
    medians = {kind: float(np.median(v)) for kind, v in seconds.items()}
    print("median s/epoch: " + ", ".join(f"{kind} {v:.1f}" for kind, v in medians.items()))
    slowest = max(medians, key=medians.__getitem__)
    for kind, value in medians.items():
        if kind != slowest:
            print(f"{kind}: {medians[slowest] / value:.2f}× faster than {slowest}")
    if args.quality_epochs:
        valid = fit_data(split, "valid")
        eval_users = split.eval_users("valid")
        histories = [split.history(int(u), "valid") for u in eval_users]
        for kind in kinds:
            model, _, info = _train(valid, args.quality_epochs, kind)
            scores = model.score(histories)
            value = validation_ndcg([(slice(0, len(eval_users)), scores)], split, eval_users)
            print(
                f"{kind:>9}: SASRec alone, validation NDCG@10 {value:.4f} after {info['epochs_trained']:g} "
                f"of {args.quality_epochs} epochs (stopped: {info['stopped']}, best epoch "
                f"{info.get('best_epoch', 'the last')}; losses {info['losses']})",
                flush=True,
            )


if __name__ == "__main__":
    main()
