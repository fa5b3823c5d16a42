"""The run configuration: nested defaults, overrides, type checks, round trip; and the data
helpers the pipeline adds (user subsample, item names)."""

import dataclasses

import pytest

from eager_llm.data import ItemText, demo_dataset
from eager_llm.pipeline.config import PRESETS, ConfigError, RunConfig, merge, parse_override, read_config_file, resolve_values


def test_a_nested_override_keeps_the_sections_other_defaults():
    config = resolve_values({"embed": {"behavior": {"dim": 48}}, "stage2": {"lora": {"r": 4}}})
    assert config.embed.behavior.dim == 48
    assert config.embed.behavior.model == RunConfig().embed.behavior.model == "sasrec"
    assert config.stage2.lora.r == 4 and config.stage2.lora.alpha == 32 and config.stage2.gct is False


def test_task_ratios_are_laid_over_the_defaults():
    from eager_llm.tasks import DEFAULT_RATIOS

    config = resolve_values({"tasks": {"ratios": {"index2item": 0.0}}})
    assert config.tasks.ratios == {**DEFAULT_RATIOS, "index2item": 0.0}
    smollm2 = resolve_values(PRESETS["smollm2"]).tasks.ratios
    assert smollm2["seqrec"] == 1.0 and smollm2["history_title_to_index"] == 0.0
    with pytest.raises(ConfigError, match="unknown tasks"):
        resolve_values({"tasks": {"ratios": {"nexttitle": 1.0}}})
    # History targets are the pipeline's default (ours); the paper's response-only loss is one key away.
    assert config.tasks.history_targets and not resolve_values({"tasks": {"history_targets": False}}).tasks.history_targets


def test_overrides_are_read_as_yaml_values():
    assert parse_override("stage1.lr=1e-4") == {"stage1": {"lr": 1e-4}}
    assert parse_override("stage1.gct=false") == {"stage1": {"gct": False}}
    # YAML 1.1 would read `no` as False; a string field must get the word, a bool field the bool.
    words = resolve_values(merge(parse_override("stage1.mixed_precision=no"), parse_override("stage2.gct=off")))
    assert words.stage1.mixed_precision == "no" and words.stage2.gct is False
    with pytest.raises(ConfigError, match="quote it"):
        resolve_values({"stage1": {"mixed_precision": False}})  # a YAML file's unquoted `no`
    assert parse_override("evaluate.ks=[1, 10]") == {"evaluate": {"ks": [1, 10]}}
    assert parse_override("index.semantic=null") == {"index": {"semantic": None}}
    config = resolve_values(merge(parse_override("evaluate.ks=[1, 10]"), parse_override("index.semantic=null")))
    assert config.evaluate.ks == (1, 10) and config.index.semantic is None
    assert resolve_values(parse_override("index.order=[behavior, semantic]")).index.order == ("behavior", "semantic")
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_override("stage1.lr")


@pytest.mark.parametrize("values, message", [
    ({"stage1": {"learning_rate": 1}}, "unknown config key 'stage1.learning_rate'"),
    ({"stage1": {"seed": 3}}, "unknown config key 'stage1.seed'"),
    ({"stage1": {"epochs": "two"}}, "stage1.epochs: expected int"),
    ({"stage1": {"epochs": True}}, "stage1.epochs: expected an integer"),
    ({"stage1": {"epochs": 0}}, "StageConfig.epochs must be an integer >= 1"),
    ({"model": {"token_init": "zeros"}}, "model.token_init"),
    ({"model": {"dropout": 1.0}}, "model.dropout must lie in"),
    ({"model": {"backbone": "smollm2", "dropout": 0.1}}, "model.dropout applies to the tiny backbone only"),
    ({"model": {"backbone": "/no/such/model"}}, "model.backbone"),
    ({"evaluate": {"ks": [50]}}, "exceeds evaluate.num_beams"),
    ({"index": {"semantic": None, "behavior": None}}, "at least one source"),
    ({"index": {"order": ["behavior", "behavior"]}}, "index: config.order must name each of"),
    ({"embed": 3}, "embed: expected a mapping"),
])
def test_bad_settings_name_the_key(values, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        resolve_values(values)


def test_the_default_index_order_keeps_the_step_keys_of_earlier_runs():
    from eager_llm.index import IndexConfig
    from eager_llm.pipeline.steps import _section

    config = RunConfig().index
    before_the_option = dataclasses.asdict(config)
    del before_the_option["order"]
    assert _section(config) == before_the_option
    assert "order" not in IndexConfig(order=["semantic", "behavior"]).to_dict()
    assert _section(dataclasses.replace(config, order=("behavior", "semantic")))["order"] == ["behavior", "semantic"]


def test_the_model_dropout_reaches_the_tiny_model_and_keeps_the_keys_of_runs_without_it():
    from types import SimpleNamespace

    from transformers import LlamaForCausalLM, Phi3ForCausalLM

    from eager_llm.pipeline.steps import _backbone, _section

    plain = RunConfig().model
    before_the_option = dataclasses.asdict(plain)
    del before_the_option["dropout"]
    assert _section(plain) == before_the_option
    assert _section(dataclasses.replace(plain, dropout=0.1))["dropout"] == 0.1

    config = resolve_values(parse_override("model.dropout=0.2"))
    model, _ = _backbone(SimpleNamespace(config=config), ["red lipstick"])
    assert isinstance(model, Phi3ForCausalLM) and model.config.resid_pdrop == 0.2
    model, _ = _backbone(SimpleNamespace(config=RunConfig()), ["red lipstick"])
    assert type(model) is LlamaForCausalLM


def test_the_run_seed_reaches_every_step_and_the_config_round_trips():
    config = resolve_values(merge(PRESETS["smollm2"], {"seed": 7}))
    assert {config.embed.behavior.seed, config.index.seed, config.tasks.seed, config.stage1.seed,
            config.stage2.seed} == {7}
    assert "seed" not in config.to_dict()["stage1"]
    again = resolve_values(config.to_dict())
    assert dataclasses.asdict(again) == dataclasses.asdict(config)
    assert config.model.backbone == "smollm2" and config.stage1.lora.r == 16


def test_yaml_and_json_files(tmp_path):
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("stage1:\n  lr: 3e-3\n  epochs: 2\n")
    assert read_config_file(str(yaml_file)) == {"stage1": {"lr": 0.003, "epochs": 2}}
    json_file = tmp_path / "c.json"
    json_file.write_text('{"stage1": {"lr": 0.01}}')
    assert resolve_values(read_config_file(str(json_file))).stage1.lr == 0.01
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        read_config_file(str(tmp_path / "list.yaml"))


def test_subsample_keeps_whole_users_and_renumbers_their_items():
    dataset = demo_dataset(num_users=200)
    small = dataset.subsample(50, seed=3)
    assert small.num_users == 50 and small == dataset.subsample(50, seed=3) is not dataset
    used = sorted({item for sequence in small.sequences for item in sequence})
    assert used == list(range(1, small.num_items + 1))
    # Each kept user's sequence maps to some original user's, item by item, through the texts.
    originals = {tuple(text.title for text in (dataset.item_text[i - 1] for i in s)) for s in dataset.sequences}
    for sequence in small.sequences:
        assert tuple(small.item_text[i - 1].title for i in sequence) in originals
    assert "subsample: 50 of 200 users" in small.report.notes[-1]
    assert dataset.subsample(500) is dataset


def test_item_name_falls_back_to_brand_and_attributes():
    assert ItemText(title="Rose Soap", brand="Acme").name() == "Rose Soap"
    assert ItemText(brand="Tipton", attributes=["Hunting", "Gun Cleaning Kits"]).name() == "Tipton Hunting Gun Cleaning Kits"
    assert ItemText(categories=["Beauty > Skin Care > Face"]).name() == "Face"
    assert ItemText().name() == ""
