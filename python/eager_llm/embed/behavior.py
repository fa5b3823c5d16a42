"""Behavior item embeddings: the item table of a sequential recommender trained on the
interactions (METHOD.md section 2).

Two models:

- ``"din"``: Deep Interest Network (Zhou et al., KDD 2018), the behavior encoder of EAGER-LLM.
  The candidate item attends over the history through an activation unit (an MLP on
  ``[h, t, h - t, h * t]``), the unnormalized attention weights pool the history, and an MLP on
  ``[interest, t, interest * t]`` gives the score. Trained with a sampled softmax over the true
  next item and ``num_negatives`` items drawn by training popularity (shared by the batch), with
  the logQ correction (every logit minus the log of its sampling probability) and accidental
  hits removed. Every prefix of a training sequence is a sample, history = its last
  ``max_length`` items. Full ranking evaluates the activation unit for every (user, item,
  history item) triple: on Beauty (22k users x 12k items) one validation takes about half an
  hour on one CPU thread, so use a GPU or a large ``eval_every`` there.
- ``"sasrec"``: SASRec (Kang & McAuley, ICDM 2018), pre-norm causal transformer blocks over item
  plus learned position embeddings, score = hidden state . item embedding. Trained with the full
  softmax cross-entropy over all items at every position (the "SASRec+ / CE" variant, stronger
  than the paper's one-negative binary loss) on windows of ``max_length + 1`` items that tile
  each training sequence from its end.

Both train on ``split.train_sequences`` only. Validation Recall@10 on ``split.valid`` picks
the weights (early stopping); test metrics are computed once, with those weights.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..data.split import Sample, Split
from ..evaluate.metrics import ranking_metrics

MODELS = ("sasrec", "din")
DEVICES = ("cpu", "cuda", "auto")
TOP_K = 20
METRIC_KS = (1, 5, 10, 20)
# Elements of DIN's largest intermediate ([users, history, attention_hidden, candidates]) per call:
# 2^24 floats = 64 MiB, so full ranking never holds more than that plus [users, num_items].
DIN_CHUNK_ELEMENTS = 1 << 24


@dataclass
class BehaviorConfig:
    """Hyper-parameters of one behavior-model run; every field is checked on construction.

    ``layers``, ``heads`` and ``dropout`` are SASRec's; ``num_negatives``,
    ``attention_hidden`` and ``mlp_hidden`` are DIN's. ``patience`` counts validations (one
    every ``eval_every`` epochs) without a better validation Recall@10."""

    model: str = "din"
    dim: int = 64
    layers: int = 2
    heads: int = 2
    dropout: float = 0.2
    max_length: int = 20
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    max_epochs: int = 200
    patience: int = 10
    eval_every: int = 1
    num_negatives: int = 60
    attention_hidden: int = 36
    mlp_hidden: tuple[int, ...] = (200, 80)
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"BehaviorConfig.model must be one of {MODELS}, got {self.model!r}")
        if self.device not in DEVICES:
            raise ValueError(f"BehaviorConfig.device must be one of {DEVICES}, got {self.device!r}")
        for name in ("dim", "layers", "heads", "max_length", "batch_size", "max_epochs", "patience", "eval_every",
                     "num_negatives", "attention_hidden"):
            _check_int(name, getattr(self, name), minimum=1)
        if not isinstance(self.mlp_hidden, (tuple, list)) or not self.mlp_hidden:
            raise ValueError(f"BehaviorConfig.mlp_hidden must be a non-empty tuple of widths, got {self.mlp_hidden!r}")
        for width in self.mlp_hidden:
            _check_int("mlp_hidden", width, minimum=1)
        self.mlp_hidden = tuple(self.mlp_hidden)
        _check_int("seed", self.seed, minimum=0)
        if self.dim % self.heads:
            raise ValueError(f"BehaviorConfig.heads ({self.heads}) must divide dim ({self.dim})")
        _check_float("dropout", self.dropout, low=0.0, high=1.0, high_open=True)
        _check_float("lr", self.lr, low=0.0, low_open=True)
        _check_float("weight_decay", self.weight_decay, low=0.0)


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"BehaviorConfig.{name} must be an integer >= {minimum}, got {value!r}")


def _check_float(name: str, value, low: float, high: float = math.inf, low_open=False, high_open=False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"BehaviorConfig.{name} must be a number in {interval}, got {value!r}")


@dataclass
class BehaviorResult:
    """``item_embeddings[i - 1]`` is item i's row of the trained item table (float32, CPU).

    Metrics are full-ranking Recall/NDCG@5/10/20 over all items, with the items of the user's
    history NOT masked out (METHOD.md counts plain full ranking), from the weights that had the
    best validation Recall@10. ``epochs`` is the number of epochs trained, ``best_epoch`` the
    one whose weights were kept."""

    item_embeddings: Tensor
    valid_metrics: dict[str, float]
    test_metrics: dict[str, float]
    epochs: int
    best_epoch: int
    seconds: float
    config: BehaviorConfig = field(repr=False)


class SASRec(nn.Module):
    """Causal self-attention over right-padded item sequences ([batch, length], 0 = padding);
    the hidden state at position p scores the item that follows position p."""

    def __init__(self, num_items: int, config: BehaviorConfig):
        super().__init__()
        self.item_embedding = nn.Embedding(num_items + 1, config.dim, padding_idx=0)
        self.position_embedding = nn.Embedding(config.max_length, config.dim)
        self.input_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(config.dim, config.heads, dim_feedforward=config.dim, dropout=config.dropout,
                                       activation="gelu", batch_first=True, norm_first=True)
            for _ in range(config.layers)
        )
        self.final_norm = nn.LayerNorm(config.dim)
        # Small embeddings: logits start near uniform, so the full softmax starts from log(num_items).
        nn.init.normal_(self.item_embedding.weight, std=0.02)
        nn.init.normal_(self.position_embedding.weight, std=0.02)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()

    def encode(self, items: Tensor) -> Tensor:
        """Hidden states [batch, length, dim]. Right padding plus the causal mask means that no
        real position ever attends to padding, so no key-padding mask is needed."""
        length = items.shape[1]
        positions = torch.arange(length, device=items.device)
        scale = math.sqrt(self.item_embedding.embedding_dim)
        x = self.input_dropout(self.item_embedding(items) * scale + self.position_embedding(positions))
        mask = nn.Transformer.generate_square_subsequent_mask(length, device=items.device)
        for block in self.blocks:
            x = block(x, src_mask=mask, is_causal=True)
        return self.final_norm(x)

    def loss(self, windows: Tensor, generator: torch.Generator) -> Tensor:
        """Full softmax cross-entropy of every next item in right-padded windows
        [batch, length + 1]. ``generator`` is unused: SASRec samples nothing."""
        inputs, targets = windows[:, :-1], windows[:, 1:]
        real = targets > 0
        hidden = self.encode(inputs)[real]
        logits = hidden @ self.item_embedding.weight[1:].T
        return F.cross_entropy(logits, targets[real] - 1)

    def score_items(self, histories: Tensor) -> Tensor:
        """Scores [users, num_items] of every item after right-padded histories."""
        last = (histories > 0).sum(1) - 1
        hidden = self.encode(histories)[torch.arange(len(histories), device=histories.device), last]
        return hidden @ self.item_embedding.weight[1:].T


class DIN(nn.Module):
    """Target attention over the history, sum pooling with the raw (unnormalized) weights, as
    the DIN paper does to keep the intensity of interest, then an MLP scorer."""

    def __init__(self, num_items: int, config: BehaviorConfig, item_counts: Tensor):
        super().__init__()
        dim = config.dim
        self.num_negatives = config.num_negatives
        self.item_embedding = nn.Embedding(num_items + 1, dim, padding_idx=0)
        self.attention = nn.Sequential(nn.Linear(4 * dim, config.attention_hidden), nn.PReLU(),
                                       nn.Linear(config.attention_hidden, 1))
        widths = (3 * dim, *config.mlp_hidden)
        self.mlp = nn.Sequential(*[layer for inner, outer in zip(widths, widths[1:])
                                   for layer in (nn.Linear(inner, outer), nn.PReLU())], nn.Linear(widths[-1], 1))
        nn.init.normal_(self.item_embedding.weight, std=0.1)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()
        # Negatives are drawn by training popularity; items never seen in training are never drawn.
        counts = item_counts.float()
        self.register_buffer("sampling_probability", counts / counts.sum(), persistent=False)

    def score(self, history: Tensor, candidates: Tensor) -> Tensor:
        """Scores [batch, C] of candidate items [batch, C] after histories [batch, L] (0 = padding).

        The activation unit's first layer on [h, t, h - t, h * t] is applied as
        (W_h + W_d) h + (W_t - W_d) t + ((h * W_p) t): the same linear map, with only the
        product term computed per (history item, candidate) pair, as one batched matmul of
        [L * hidden, dim] by [dim, C] per row (no [batch, C, L, dim] tensor)."""
        h, t = self.item_embedding(history), self.item_embedding(candidates)
        batch, length, dim = h.shape
        first, activation, second = self.attention
        w_h, w_t, w_d, w_p = first.weight.chunk(4, dim=1)
        per_history = h @ (w_h + w_d).T  # [batch, L, hidden]
        per_candidate = t @ (w_t - w_d).T + first.bias  # [batch, C, hidden]
        product = (h[:, :, None, :] * w_p).reshape(batch, -1, dim) @ t.transpose(1, 2)  # [batch, L * hidden, C]
        product = product.view(batch, length, -1, t.shape[1])
        hidden = activation(product + per_history[..., None] + per_candidate.transpose(1, 2)[:, None])
        weights = torch.einsum("blhc,h->bcl", hidden, second.weight[0]) + second.bias
        interest = (weights * (history > 0)[:, None, :]) @ h  # [batch, C, dim]
        return self.mlp(torch.cat([interest, t, interest * t], dim=-1)).squeeze(-1)

    def loss(self, windows: Tensor, generator: torch.Generator) -> Tensor:
        """Sampled softmax with logQ correction; the target is each right-padded window's last
        item, the history the items before it."""
        last = (windows > 0).sum(1) - 1
        rows = torch.arange(len(windows), device=windows.device)
        targets = windows[rows, last]
        history = windows.clone()
        history[rows, last] = 0
        negatives = 1 + torch.multinomial(self.sampling_probability.cpu(), self.num_negatives, replacement=True,
                                          generator=generator).to(windows.device)
        candidates = torch.cat([targets[:, None], negatives.expand(len(windows), -1)], dim=1)
        logits = self.score(history[:, :-1], candidates) - self.sampling_probability[candidates - 1].log()
        accidental = torch.zeros_like(candidates, dtype=torch.bool)
        accidental[:, 1:] = candidates[:, 1:] == targets[:, None]
        logits = logits.masked_fill(accidental, -math.inf)
        return F.cross_entropy(logits, torch.zeros_like(targets))

    def score_items(self, histories: Tensor) -> Tensor:
        """Scores [users, num_items] of every item, computed over chunks of items."""
        users, length = histories.shape
        num_items = self.item_embedding.num_embeddings - 1
        chunk = max(1, DIN_CHUNK_ELEMENTS // (users * length * self.attention[0].out_features))
        scores = torch.empty(users, num_items, device=histories.device)
        for start in range(0, num_items, chunk):
            items = torch.arange(start + 1, min(start + chunk, num_items) + 1, device=histories.device)
            scores[:, start : start + len(items)] = self.score(histories, items.expand(users, -1))
        return scores


def item_counts(sequences: list[list[int]], num_items: int) -> Tensor:
    """Occurrences of each item (index i - 1 for item i) in the given sequences."""
    flat = torch.tensor([item for sequence in sequences for item in sequence], dtype=torch.long)
    return torch.bincount(flat - 1, minlength=num_items) if len(flat) else torch.zeros(num_items, dtype=torch.long)


def training_windows(sequences: list[list[int]], max_length: int, every_prefix: bool) -> Tensor:
    """Right-padded windows [N, max_length + 1] of at least two items. With ``every_prefix``
    one window ends at every item but the first (DIN's samples); otherwise windows of
    max_length + 1 items tile the sequence from its end, overlapping by one item so that every
    item but the first is a target exactly once (SASRec)."""
    windows = []
    for sequence in sequences:
        ends = range(len(sequence) - 1, 0, -1 if every_prefix else -max_length)
        windows += [sequence[max(0, end - max_length) : end + 1] for end in ends]
    out = torch.zeros(len(windows), max_length + 1, dtype=torch.long)
    for row, window in enumerate(windows):
        out[row, : len(window)] = torch.tensor(window)
    return out


def _histories(samples: list[Sample], max_length: int) -> tuple[Tensor, Tensor]:
    """Right-padded histories [N, max_length] (the most recent items) and targets [N]."""
    histories = torch.zeros(len(samples), max_length, dtype=torch.long)
    for row, sample in enumerate(samples):
        recent = sample.history[-max_length:]
        histories[row, : len(recent)] = torch.tensor(recent)
    return histories, torch.tensor([sample.target for sample in samples], dtype=torch.long)


@torch.no_grad()
def evaluate_full_ranking(model: nn.Module, samples: list[Sample], max_length: int, batch_size: int,
             device: torch.device) -> dict[str, float]:
    """Full-ranking Recall/NDCG@5/10/20 of ``model`` over all items (history not masked)."""
    was_training = model.training
    model.eval()
    histories, targets = _histories(samples, max_length)
    ranked = torch.cat([
        model.score_items(histories[start : start + batch_size].to(device)).topk(TOP_K, dim=1).indices.cpu() + 1
        for start in range(0, len(samples), batch_size)
    ])
    model.train(was_training)
    return ranking_metrics(ranked, targets, METRIC_KS)


def popularity_metrics(split: Split, num_items: int, ks=METRIC_KS) -> dict[str, float]:
    """Test metrics of recommending the most frequent training items to everyone (ties: the
    smaller item id first), counted in ``split.train_sequences``."""
    order = torch.sort(item_counts(split.train_sequences, num_items), descending=True, stable=True).indices
    ranked = (order[: max(ks)] + 1).expand(len(split.test), -1)
    return ranking_metrics(ranked, torch.tensor([s.target for s in split.test], dtype=torch.long), ks)


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("BehaviorConfig.device is 'cuda' but torch sees no CUDA device")
    return torch.device(name)


def _check_split(split: Split, num_items: int) -> None:
    if isinstance(num_items, bool) or not isinstance(num_items, int) or num_items < 1:
        raise ValueError(f"num_items must be a positive integer, got {num_items!r}")
    if not split.valid or not split.test:
        raise ValueError("split.valid and split.test must not be empty")
    items = [i for s in split.train_sequences for i in s] + [i for s in split.valid + split.test
                                                            for i in (*s.history, s.target)]
    if min(items) < 1 or max(items) > num_items:
        raise ValueError(f"item ids must lie in 1..num_items={num_items}, found {min(items)}..{max(items)}")


def _train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, windows: Tensor, batch_size: int,
                 generator: torch.Generator, device: torch.device) -> float:
    """One pass over the windows in a seeded random order; returns the mean batch loss."""
    total, batches = 0.0, 0
    order = torch.randperm(len(windows), generator=generator)
    for start in range(0, len(windows), batch_size):
        batch = windows[order[start : start + batch_size]]
        batch = batch[:, : int((batch > 0).sum(1).max())].to(device)  # drop all-padding columns
        loss = model.loss(batch, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total, batches = total + loss.item(), batches + 1
    return total / batches


def build_model(num_items: int, config: BehaviorConfig, train_sequences: list[list[int]]) -> nn.Module:
    """The untrained model of ``config.model``; DIN samples negatives by training popularity."""
    if config.model == "sasrec":
        return SASRec(num_items, config)
    return DIN(num_items, config, item_counts(train_sequences, num_items))


def train_behavior_model(split: Split, num_items: int, config: BehaviorConfig | None = None,
                         progress: bool = True) -> BehaviorResult:
    """Trains ``config.model`` on ``split.train_sequences`` with early stopping on validation
    Recall@10 and returns its item embeddings and metrics (see BehaviorResult).

    The global torch RNG is seeded with ``config.seed`` inside a fork (so the caller's RNG state
    is left alone) right before the model is built; two runs with the same seed on CPU give
    identical results."""
    config = config or BehaviorConfig()
    _check_split(split, num_items)
    device = _resolve_device(config.device)
    windows = training_windows(split.train_sequences, config.max_length, every_prefix=config.model == "din")
    if not len(windows):
        raise ValueError("split.train_sequences has no sequence of two or more items: nothing to train on")
    started = time.perf_counter()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed)
        generator = torch.Generator().manual_seed(config.seed)
        model = build_model(num_items, config, split.train_sequences).to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        best_recall, best_epoch, best_metrics, best_state, stale = -1.0, 0, {}, None, 0
        bar = tqdm(range(1, config.max_epochs + 1), desc=config.model, disable=not progress)
        for epoch in bar:
            loss = _train_epoch(model, optimizer, windows, config.batch_size, generator, device)
            if epoch % config.eval_every and epoch != config.max_epochs:
                bar.set_postfix(loss=f"{loss:.4f}")
                continue
            metrics = evaluate_full_ranking(model, split.valid, config.max_length, config.batch_size, device)
            if metrics["recall@10"] > best_recall:
                best_recall, best_epoch, best_metrics, stale = metrics["recall@10"], epoch, metrics, 0
                best_state = {name: value.detach().clone() for name, value in model.state_dict().items()}
            else:
                stale += 1
            bar.set_postfix(loss=f"{loss:.4f}", valid_r10=f"{metrics['recall@10']:.4f}", best=f"{best_recall:.4f}")
            if stale >= config.patience:
                break
        bar.close()
        model.load_state_dict(best_state)
        test_metrics = evaluate_full_ranking(model, split.test, config.max_length, config.batch_size, device)
    return BehaviorResult(
        item_embeddings=model.item_embedding.weight[1:].detach().float().cpu().clone(),
        valid_metrics=best_metrics,
        test_metrics=test_metrics,
        epochs=epoch,
        best_epoch=best_epoch,
        seconds=time.perf_counter() - started,
        config=config,
    )


__all__ = [
    "BehaviorConfig", "BehaviorResult", "DIN", "SASRec", "build_model", "evaluate_full_ranking", "item_counts",
    "popularity_metrics", "train_behavior_model", "training_windows",
]
