"""Dual-source Knowledge-rich Item indices (DKI): one source's codes, then the other's.

An item's index is the semantic quantizer's codes followed by the behavior quantizer's codes
(``<a_s1><b_s2><c_b1><d_b2>`` in the paper's configuration; ``IndexConfig.order`` can put
the behavior codes first), plus a disambiguation code when the collision policy needs one.
Each (position, code) is one new token; position ``p`` has letter ``"abc..."[p]``, and token
``<letter_code>`` has id ``first_token_id + offset[p] + code``, where ``offset`` is the running
sum of the codebook sizes, so all item tokens form one contiguous block of ids that the LM can
score as one slice of its vocabulary.

Item i of the data (ids start at 1) is row i - 1 of every tensor here.
"""

from __future__ import annotations

import json
import os
import string
from dataclasses import asdict, dataclass, field, fields

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

import eager_ext

from ..io import atomic_path, atomic_write_json, sha256_of_file
from ._checks import check_dim, check_matrix, check_positive, derive_seed
from .collisions import (
    check_policy,
    collision_stats,
    extra_level_codes,
    reassign_last_level,
    resolve_collisions,
)
from .quantizers import Quantizer, make_quantizer, quantizer_from_state

SOURCES = ("semantic", "behavior")
FORMAT = "eager-llm-dki-index"
FORMAT_VERSION = 1
TENSORS_FILE = "index.safetensors"
META_FILE = "index.json"


@dataclass
class SourceConfig:
    """How one source is quantized.

    Attributes:
        quantizer: ``"rq_kmeans"``, ``"balanced_tree"`` (released EAGER: last code = slot) or
            ``"balanced_tree_sub"`` (real sub-clusters at every level).
        levels: codes per item from this source.
        codebook_size: codes per level (the branch of the trees).
    """

    quantizer: str = "balanced_tree"
    levels: int = 2
    codebook_size: int = 256

    def quantizer_for(self, name: str) -> Quantizer:
        """A new (unfitted) quantizer with these settings; errors name the config field ``name``."""
        try:
            return make_quantizer(self.quantizer, self.levels, self.codebook_size)
        except ValueError as error:
            raise ValueError(f"{name}: {error}") from None


@dataclass
class IndexConfig:
    """Configuration of a :class:`DualSourceIndex`; the defaults are the paper's (balanced trees,
    2 x 256 codes per source, 1,024 tokens).

    Attributes:
        semantic: quantizer of the semantic embeddings, or None to leave them out.
        behavior: quantizer of the behavior embeddings, or None to leave them out.
        collision_policy: ``"reassign"`` (default; appends a disambiguation column only if some
            item cannot be re-assigned) or ``"extra_level"`` (always appends one).
        extra_level_size: codes of the disambiguation position; None = as many as the largest
            collision group at build time needs. Reserve more if :meth:`DualSourceIndex.add_items`
            may create larger groups (it never grows the vocabulary). With ``"reassign"``, setting
            it also reserves the position when the build did not need it, so that items added
            later can fall back on it when their last level is full.
        seed: seeds every quantizer (each source and level gets a seed derived from it).
        order: the sources in index order, both named even if one is None. The paper's is
            semantic first; beam search commits to the first source's clusters first.
    """

    semantic: SourceConfig | None = field(default_factory=SourceConfig)
    behavior: SourceConfig | None = field(default_factory=SourceConfig)
    collision_policy: str = "reassign"
    extra_level_size: int | None = None
    seed: int = 0
    order: tuple[str, ...] = SOURCES

    def validate(self) -> None:
        if self.semantic is None and self.behavior is None:
            raise ValueError("config must use at least one source: semantic and behavior are both None")
        for name in SOURCES:
            source = getattr(self, name)
            if source is not None:
                source.quantizer_for(f"config.{name}")
        check_policy(self.collision_policy, "config.collision_policy")
        if self.extra_level_size is not None:
            check_positive(self.extra_level_size, "config.extra_level_size")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"config.seed must be an integer, got {self.seed!r}")
        if not isinstance(self.order, (list, tuple)) or len(self.order) != len(SOURCES) \
                or set(self.order) != set(SOURCES):
            raise ValueError(f"config.order must name each of {list(SOURCES)} once, got {list(self.order)}")

    def to_dict(self) -> dict:
        """The fields as plain values. ``order`` is left out at its default, so that indices
        saved, and pipeline steps keyed, before the option existed keep reading as the same."""
        values = asdict(self)
        if tuple(self.order) == SOURCES:
            del values["order"]
        else:
            values["order"] = list(self.order)
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "IndexConfig":
        unknown = set(values) - {field.name for field in fields(cls)}
        if unknown:
            raise ValueError(f"config has unknown fields {sorted(unknown)}")
        values = dict(values)
        for name in SOURCES:
            if values.get(name) is not None:
                values[name] = SourceConfig(**values[name])
        if "order" in values:
            values["order"] = tuple(values["order"])
        return cls(**values)


class DualSourceIndex:
    """Item indices built from semantic and/or behavior embeddings; see the module docstring.

    Build with :meth:`build`, read with :meth:`load`. Attributes:

    * ``codes``: ``[num_items, L]`` int64 code of each item at each position.
    * ``raw_codes``: the quantizers' codes before collision resolution.
    * ``codebook_sizes``: codes per position (the token block of position ``p`` has that many ids).
    * ``quantizers``: the fitted quantizer of each used source, in index order.
    """

    def __init__(self, config: IndexConfig, quantizers: dict[str, Quantizer], codes: Tensor,
                 raw_codes: Tensor, errors: Tensor, codebook_sizes: list[int]):
        self.config = config
        self.quantizers = quantizers
        self.codes = codes
        self.raw_codes = raw_codes
        self.errors = errors  # [num_items, sources] squared reconstruction error per item
        self.codebook_sizes = codebook_sizes

    # ---------------------------------------------------------------------------------------
    # Building and adding items.

    @classmethod
    def build(cls, semantic: Tensor | None, behavior: Tensor | None,
              config: IndexConfig | None = None) -> "DualSourceIndex":
        """Fits the configured quantizers, joins their codes (in ``config.order``) and resolves
        collisions with ``config.collision_policy``.

        Args:
            semantic: ``[num_items, D_s]`` semantic embeddings (None if ``config.semantic`` is).
            behavior: ``[num_items, D_b]`` behavior embeddings (None if ``config.behavior`` is).
            config: an :class:`IndexConfig` (default: the paper's).
        """
        config = IndexConfig() if config is None else config
        config.validate()
        inputs = _check_sources(config, semantic=semantic, behavior=behavior)
        quantizers = {}
        for name, x in inputs.items():
            quantizer = getattr(config, name).quantizer_for(f"config.{name}")
            try:
                quantizers[name] = quantizer.fit(x, seed=derive_seed(config.seed, name))
            except ValueError as error:  # the quantizer cannot know which source it serves
                raise ValueError(f"config.{name}: {error}") from error
        raw = torch.cat([quantizer.train_codes for quantizer in quantizers.values()], 1)
        distances = _last_level_distances(quantizers, inputs, raw, row_offset=0)
        codes, _ = resolve_collisions(raw, config.collision_policy, distances)
        if codes.shape[1] == raw.shape[1] and config.extra_level_size is not None:
            # A reserved (all-zero) position that add_items can fall back on later.
            codes = torch.cat([codes, torch.zeros_like(codes[:, :1])], 1)
        sizes = [size for quantizer in quantizers.values() for size in quantizer.codebook_sizes]
        if codes.shape[1] > raw.shape[1]:
            sizes.append(_extra_level_size(config, codes[:, -1]))
        if len(sizes) > len(string.ascii_lowercase):
            raise ValueError(f"the index has {len(sizes)} positions; token letters allow at most 26")
        errors = _squared_errors(quantizers, inputs, codes)
        return cls(config, quantizers, codes, raw, errors, sizes)

    def add_items(self, semantic: Tensor | None = None, behavior: Tensor | None = None) -> Tensor:
        """Gives new items codes with the frozen quantizers and appends them as the next rows.

        Collisions (with existing and with other new items) are resolved by the index's policy;
        existing items never change. Raises ValueError, leaving the index unchanged, if that is
        impossible without changing the vocabulary (the disambiguation position would need more
        than ``extra_level_size`` codes, or ``"reassign"`` finds no free code and the index has no
        disambiguation position).

        Returns:
            The new items' rows, ``[M]`` int64 (``num_items .. num_items + M - 1``).
        """
        inputs = _check_sources(self.config, semantic=semantic, behavior=behavior)
        slices = _source_slices(self.quantizers)
        for name, x in inputs.items():
            check_dim(x, self.quantizers[name].dim, name)
        start, width = self.num_items, self.raw_codes.shape[1]
        new_raw = torch.cat([quantizer.assign_new(inputs[name], self.codes[:, slices[name]])
                             for name, quantizer in self.quantizers.items()], 1)
        base = torch.cat([self.codes[:, :width], new_raw])
        unresolved = torch.zeros(base.shape[0], dtype=torch.bool)
        if self.config.collision_policy == "reassign":
            distances = _last_level_distances(self.quantizers, inputs, base, row_offset=start)
            base, unresolved = reassign_last_level(base, distances, start=start)
        codes = self._disambiguate(base, unresolved)
        errors = _squared_errors(self.quantizers, inputs, codes[start:])
        self.codes = codes
        self.raw_codes = torch.cat([self.raw_codes, new_raw])
        self.errors = torch.cat([self.errors, errors])
        return torch.arange(start, self.num_items)

    def _disambiguate(self, base: Tensor, unresolved: Tensor) -> Tensor:
        """Appends the disambiguation column, if the index has one, for the rows after the
        existing items; raises if a collision remains that it cannot take."""
        if not self.has_extra_level:
            if unresolved.any():
                rows = (unresolved.nonzero().squeeze(1) + 1).tolist()[:10]
                raise ValueError(
                    f"new items (ids {rows}) found no free last-level code and the index has no "
                    "disambiguation position; rebuild it, or use collision_policy='extra_level'"
                )
            return base
        extra = extra_level_codes(base, fixed=self.codes[:, -1])
        size = self.codebook_sizes[-1]
        if int(extra.max()) >= size:
            raise ValueError(
                f"new items need disambiguation code {int(extra.max())} but the position has "
                f"extra_level_size={size} codes; rebuild with a larger config.extra_level_size"
            )
        return torch.cat([base, extra[:, None]], 1)

    def add_items_to_trie(self, trie: eager_ext.ItemTrie, first_token_id: int,
                          semantic: Tensor | None = None, behavior: Tensor | None = None) -> Tensor:
        """:meth:`add_items`, then inserts the new items' token ids into ``trie`` (built by
        :meth:`trie` with the same ``first_token_id``). Returns the new rows."""
        if trie.num_items != self.num_items:
            raise ValueError(f"trie holds {trie.num_items} items but the index {self.num_items}: "
                             "they are out of sync")
        rows = self.add_items(semantic=semantic, behavior=behavior)
        trie.insert(self.item_token_ids(first_token_id)[rows])
        return rows

    # ---------------------------------------------------------------------------------------
    # Tokens.

    @property
    def num_items(self) -> int:
        return self.codes.shape[0]

    @property
    def num_tokens(self) -> int:
        """Size of the item-token block: the sum of the codebook sizes."""
        return sum(self.codebook_sizes)

    @property
    def has_extra_level(self) -> bool:
        """Whether the last position is a disambiguation code from the collision policy."""
        return self.codes.shape[1] > self.raw_codes.shape[1]

    @property
    def position_offsets(self) -> Tensor:
        """``[L]`` id offset of each position's first token inside the block."""
        sizes = torch.tensor(self.codebook_sizes)
        return torch.cumsum(sizes, 0) - sizes

    def token_strings(self) -> list[str]:
        """All item tokens in id order: ``<a_0> .. <a_{K-1}> <b_0> ...``."""
        return [f"<{string.ascii_lowercase[position]}_{code}>"
                for position, size in enumerate(self.codebook_sizes) for code in range(size)]

    def item_token_ids(self, first_token_id: int) -> Tensor:
        """``[num_items, L]`` token id of each item's code at each position."""
        check_positive(first_token_id, "first_token_id", minimum=0)
        return self.codes + self.position_offsets + first_token_id

    def item_strings(self) -> list[str]:
        """Each item's index as text, e.g. ``"<a_12><b_7><c_3><d_200>"``."""
        letters = string.ascii_lowercase
        return ["".join(f"<{letters[p]}_{code}>" for p, code in enumerate(row)) for row in self.codes.tolist()]

    def code_embeddings(self, semantic: Tensor | None = None, behavior: Tensor | None = None) -> list[Tensor]:
        """For each position, ``[codebook_size, D]``: the mean embedding (from that position's
        source) of the items holding each code, zero rows for unused codes; all-zero
        ``[codebook_size, 1]`` for the disambiguation position and for sources not given. A way
        to initialise the index tokens from what they stand for."""
        given = {"semantic": semantic, "behavior": behavior}
        out: list[Tensor] = []
        for position, size in enumerate(self.codebook_sizes):
            source, _ = self._position_source(position)
            embeddings = given.get(source)
            if embeddings is None:
                out.append(torch.zeros(size, 1))
                continue
            if embeddings.shape[0] != self.num_items:
                raise ValueError(f"{source} has {embeddings.shape[0]} rows but the index {self.num_items} items")
            sums = torch.zeros(size, embeddings.shape[1]).index_add_(0, self.codes[:, position], embeddings.float())
            counts = torch.bincount(self.codes[:, position], minlength=size).clamp(min=1).unsqueeze(1)
            out.append(sums / counts)
        return out

    def trie(self, first_token_id: int) -> eager_ext.ItemTrie:
        """The decoding trie over the items' token ids; item id = row."""
        return eager_ext.ItemTrie.from_codes(self.item_token_ids(first_token_id))

    # ---------------------------------------------------------------------------------------
    # Statistics and persistence.

    def statistics(self) -> dict:
        """Code usage per position, mean squared reconstruction error per source, collisions
        before (the quantizers' raw codes) and after resolution, and counts."""
        positions = []
        for position, size in enumerate(self.codebook_sizes):
            source, level = self._position_source(position)
            used = int(torch.unique(self.codes[:, position]).numel())
            positions.append({"position": string.ascii_lowercase[position], "source": source,
                              "level": level, "codebook_size": size, "codes_used": used,
                              "usage": used / size})
        items_before, groups_before = collision_stats(self.raw_codes)
        items_after, groups_after = collision_stats(self.codes)
        width = self.raw_codes.shape[1]
        return {
            "num_items": self.num_items,
            "num_tokens": self.num_tokens,
            "positions": positions,
            "quantization_error": {name: float(self.errors[:, column].mean(dtype=torch.float64))
                                   for column, name in enumerate(self.quantizers)},
            "collisions": {
                "policy": self.config.collision_policy,
                "before": {"items": items_before, "groups": groups_before},
                "after": {"items": items_after, "groups": groups_after},
                "reassigned": int((self.codes[:, :width] != self.raw_codes).any(1).sum()),
                "extra_level": self.has_extra_level,
            },
        }

    def save(self, directory: str | os.PathLike) -> None:
        """Writes ``index.safetensors`` (codes and quantizer tensors) and ``index.json`` (config,
        quantizer settings, statistics and the tensors' checksum), each atomically."""
        os.makedirs(directory, exist_ok=True)
        tensors = {"codes": self.codes, "raw_codes": self.raw_codes, "errors": self.errors}
        quantizers = {}
        for name, quantizer in self.quantizers.items():
            meta, state = quantizer.state()
            quantizers[name] = meta
            tensors.update({f"{name}/{key}": value for key, value in state.items()})
        with atomic_path(os.path.join(directory, TENSORS_FILE)) as temporary:
            save_file({key: value.contiguous().cpu() for key, value in tensors.items()}, temporary)
            digest = sha256_of_file(temporary)  # before the rename: a later writer cannot change it
        atomic_write_json(os.path.join(directory, META_FILE), {
            "format": FORMAT, "version": FORMAT_VERSION, "config": self.config.to_dict(),
            "quantizers": quantizers, "codebook_sizes": self.codebook_sizes,
            "tensors_sha256": digest, "statistics": self.statistics(),
        })

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "DualSourceIndex":
        """Reads an index written by :meth:`save`; checks its format and checksum."""
        with open(os.path.join(directory, META_FILE), encoding="utf-8") as handle:
            meta = json.load(handle)
        if meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
            raise ValueError(f"{directory} does not hold a {FORMAT} v{FORMAT_VERSION} index")
        path = os.path.join(directory, TENSORS_FILE)
        if sha256_of_file(path) != meta["tensors_sha256"]:
            raise ValueError(f"{path} does not match the checksum in {META_FILE}")
        tensors = load_file(path)
        quantizers = {}
        config = IndexConfig.from_dict(meta["config"])
        try:
            config.validate()
        except ValueError as error:
            raise ValueError(f"{directory}/{META_FILE}: {error}") from None
        # Index order is config.order; the JSON object's key order is not (keys are sorted).
        for name in (name for name in config.order if name in meta["quantizers"]):
            prefix = name + "/"
            state = {key[len(prefix):]: value for key, value in tensors.items() if key.startswith(prefix)}
            quantizers[name] = quantizer_from_state(meta["quantizers"][name], state)
        return cls(config, quantizers, tensors["codes"], tensors["raw_codes"], tensors["errors"],
                   meta["codebook_sizes"])

    # ---------------------------------------------------------------------------------------

    def _position_source(self, position: int) -> tuple[str, int]:
        for name, columns in _source_slices(self.quantizers).items():
            if columns.start <= position < columns.stop:
                return name, position - columns.start
        return "disambiguation", 0


def _check_sources(config: IndexConfig, **embeddings) -> dict[str, Tensor]:
    """The configured sources' embeddings, checked, in index order; all with the same rows."""
    inputs = {}
    for name in config.order:
        x, source = embeddings[name], getattr(config, name)
        if source is None and x is not None:
            raise ValueError(f"{name} embeddings were given but config.{name} is None")
        if source is not None and x is None:
            raise ValueError(f"config.{name} is set but no {name} embeddings were given")
        if x is not None:
            inputs[name] = check_matrix(x, name)
    rows = {name: x.shape[0] for name, x in inputs.items()}
    if len(set(rows.values())) > 1:
        raise ValueError(f"semantic and behavior must have the same number of rows, got {rows}")
    return inputs


def _source_slices(quantizers: dict[str, Quantizer]) -> dict[str, slice]:
    slices, start = {}, 0
    for name, quantizer in quantizers.items():
        slices[name] = slice(start, start + quantizer.levels)
        start += quantizer.levels
    return slices


def _last_level_distances(quantizers, inputs, codes: Tensor, row_offset: int):
    """Distances for ``"reassign"``: the last position belongs to the last source, so its
    quantizer scores the codes of that position; row r of ``codes`` is row r - row_offset of
    the embeddings."""
    name = list(quantizers)[-1]
    columns = _source_slices(quantizers)[name]
    return lambda rows: quantizers[name].last_level_distances(
        inputs[name][rows - row_offset], codes[rows][:, columns])


def _squared_errors(quantizers, inputs, codes: Tensor) -> Tensor:
    """``[N, sources]`` reconstruction error of each item under its final codes."""
    slices = _source_slices(quantizers)
    return torch.stack([quantizer.squared_errors(inputs[name], codes[:, slices[name]])
                        for name, quantizer in quantizers.items()], 1)


def _extra_level_size(config: IndexConfig, extra: Tensor) -> int:
    needed = int(extra.max()) + 1
    if config.extra_level_size is None:
        return needed
    if config.extra_level_size < needed:
        raise ValueError(f"config.extra_level_size ({config.extra_level_size}) is smaller than the "
                         f"{needed} disambiguation codes the collisions need")
    return config.extra_level_size
