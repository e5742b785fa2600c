"""SASRec (Kang & McAuley 2018): a small self-attentive next-item model trained on CPU.

It complements the closed-form sources (on validation it adds about +0.01 NDCG@10 to the
fusion). Training takes minutes on two cores, so fitted weights are cached on disk, keyed by
the training data and every hyper-parameter; a second fit on the same data loads them.
Needs torch (the 'embed' extra).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import pickle
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from fewrec.data.errors import FewrecError
from fewrec.retrieval.base import FitData, ScoringContext


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise FewrecError(
            "the 'sasrec' source needs torch; install fewrec with the 'embed' extra "
            "(pip install 'fewrec[embed]') or drop 'sasrec' from retrieval.sources"
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
            causal = torch.triu(torch.ones(length, length, dtype=torch.bool), 1)
            h = self.encoder(self.drop(h), mask=causal, src_key_padding_mask=x == 0)
            return self.norm(h)

        def logits(self, h: Any) -> Any:
            return h @ self.item.weight[1:].T

    return SASRecNet()


class SASRec:
    """Next-item transformer over the training sequences; scores = last position's logits,
    max-normalised per user and averaged over `seeds`."""

    name = "sasrec"
    time_aware = False

    def __init__(
        self, dim: int = 64, max_len: int = 50, layers: int = 2, heads: int = 1, dropout: float = 0.2,
        epochs: int = 32, batch_size: int = 128, learning_rate: float = 2e-3, negatives: int = 1000,
        seeds: tuple[int, ...] = (0,), threads: int | None = None, cache_dir: Path | None = None,
        progress: bool = True,
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
        self.nets: list[Any] = []

    def _key(self, data: FitData, seed: int) -> str:
        digest = hashlib.sha256()
        digest.update(json.dumps({**self.params, "seed": seed, "n_items": data.n_items, "v": 1}).encode())
        digest.update(np.ascontiguousarray(data.users, dtype=np.int64).tobytes())
        digest.update(np.ascontiguousarray(data.items, dtype=np.int64).tobytes())
        return digest.hexdigest()[:24]

    def _train(self, sequences: list[np.ndarray], n_items: int, seed: int) -> Any:
        torch = _torch()
        functional = torch.nn.functional
        p = self.params
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        net = _build_net(n_items, p["dim"], p["max_len"], p["layers"], p["heads"], p["dropout"])
        optimiser = torch.optim.AdamW(net.parameters(), lr=p["learning_rate"], weight_decay=0.0)
        window = p["max_len"] + 1
        # Each sequence cut into windows from its end, so every training target is used once an epoch.
        chunks = [s[max(0, end - window) : end] for s in sequences for end in range(len(s), 1, -(window - 1))]
        bar = tqdm(
            range(p["epochs"]), desc=f"training SASRec (seed {seed})", unit="epoch", disable=not self.progress
        )
        for _ in bar:
            net.train()
            order = rng.permutation(len(chunks))
            for start in range(0, len(order), p["batch_size"]):
                batch = [chunks[j] for j in order[start : start + p["batch_size"]]]
                length = max(len(c) for c in batch)
                x = np.zeros((len(batch), length), dtype=np.int64)
                for row, chunk in enumerate(batch):
                    x[row, length - len(chunk) :] = chunk
                xt = torch.from_numpy(x)
                inputs, targets = xt[:, :-1], xt[:, 1:]
                hidden = net(inputs)
                valid = (targets > 0) & (inputs > 0)
                positives = targets[valid] - 1
                # Sampled softmax: the batch's positives plus shared uniform negatives.
                negatives = torch.from_numpy(rng.integers(0, n_items, p["negatives"]))
                candidates, inverse = torch.unique(torch.cat([positives, negatives]), return_inverse=True)
                logits = hidden[valid] @ net.item.weight[candidates + 1].T
                loss = functional.cross_entropy(logits, inverse[: len(positives)])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
        bar.close()
        net.eval()
        return net

    def fit(self, data: FitData) -> SASRec:
        torch = _torch()
        torch.set_num_threads(self.threads)
        users, items = np.asarray(data.users), np.asarray(data.items)
        bounds = np.flatnonzero(np.r_[True, users[1:] != users[:-1], True])
        sequences = [items[a:b] + 1 for a, b in itertools.pairwise(bounds)]
        self.n_items = data.n_items
        self.nets = []
        p = self.params
        for seed in self.seeds:
            path = self.cache_dir / f"sasrec-{self._key(data, seed)}.pt" if self.cache_dir else None
            if path is not None and path.exists():
                net = _build_net(data.n_items, p["dim"], p["max_len"], p["layers"], p["heads"], p["dropout"])
                try:
                    net.load_state_dict(torch.load(path, weights_only=True))
                    net.eval()
                    self.nets.append(net)
                    continue
                except (RuntimeError, OSError, ValueError, pickle.UnpicklingError, EOFError):
                    pass  # unreadable cache entry: train again and overwrite it
            net = self._train(sequences, data.n_items, seed)
            if path is not None:
                self._save(net, path)
            self.nets.append(net)
        return self

    @staticmethod
    def _save(net: Any, path: Path) -> None:
        """Write to a temporary file and rename, so a crash never leaves a half-written entry."""
        torch = _torch()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="tmp-sasrec-", suffix=".pt", dir=path.parent)
        os.close(fd)
        try:
            torch.save(net.state_dict(), tmp)
            os.replace(tmp, path)
        except (OSError, RuntimeError) as exc:  # a cache we cannot write only costs time later
            logging.getLogger(__name__).warning("could not cache SASRec weights at %s: %s", path, exc)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def score(self, histories: list[np.ndarray], context: ScoringContext | None = None) -> np.ndarray:
        torch = _torch()
        max_len = self.params["max_len"]
        out = np.zeros((len(histories), self.n_items), dtype=np.float32)
        with _torch_threads(1), torch.no_grad():
            for net in self.nets:
                for start in range(0, len(histories), 256):
                    part = histories[start : start + 256]
                    x = np.zeros((len(part), max_len), dtype=np.int64)
                    for row, history in enumerate(part):
                        recent = np.asarray(history[-max_len:], dtype=np.int64) + 1
                        if len(recent):
                            x[row, max_len - len(recent) :] = recent
                    scores = net.logits(net(torch.from_numpy(x))[:, -1]).numpy()
                    scale = np.abs(scores).max(axis=1, keepdims=True)
                    scores = scores / np.where(scale > 0, scale, 1.0)
                    empty = np.array([len(h) == 0 for h in part])
                    scores[empty] = 0.0
                    out[start : start + len(part)] += scores / len(self.nets)
        return out
