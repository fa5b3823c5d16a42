"""The whole recommender in one object: the trained EagerLLM, its tokenizer, the item index and
the decoding trie, with save_pretrained / from_pretrained (safetensors and JSON, no pickle)."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict

import torch
from safetensors.torch import load_file

import eager_ext

from ..data import Sample
from ..generate import constrained_beam_search, left_pad
from ..index import DualSourceIndex
from ..io import save_tensors, temporary_folder
from ..tasks import evaluation_prompt_ids, pad_token_id
from .eager import EagerConfig, EagerLLM

FORMAT = "eager-llm-recommender"
VERSION = 1


class Recommender:
    """A trained EAGER-LLM recommender.

    Args:
        eager: the :class:`EagerLLM` (LM, optionally with a LoRA adapter, plus projectors).
        tokenizer: its tokenizer, holding the index tokens as one block from ``first_token_id``.
        index: the :class:`~eager_llm.index.DualSourceIndex` that gives every item its tokens.
        first_token_id: id of the first index token.
    """

    def __init__(self, eager: EagerLLM, tokenizer, index: DualSourceIndex, first_token_id: int):
        missing = [t for t in index.token_strings() if tokenizer.convert_tokens_to_ids(t) in (None, tokenizer.unk_token_id)]
        if missing:
            raise ValueError(f"the tokenizer lacks {len(missing)} index tokens (first: {missing[:3]}); "
                             "add them with eager_llm.model.add_index_tokens")
        self.eager, self.tokenizer, self.index, self.first_token_id = eager, tokenizer, index, first_token_id
        self.trie = index.trie(first_token_id)

    @property
    def item_tokens(self) -> tuple[int, int]:
        return self.first_token_id, self.first_token_id + self.index.num_tokens

    def recommend(self, histories: list[list[int]], k: int = 10, num_beams: int = 20,
                  score_space: str = "items") -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k items (1-based ids, -1 where fewer exist) and their log-probabilities for each
        history of 1-based item ids, oldest first."""
        for row, history in enumerate(histories):
            bad = [item for item in history if not 1 <= item <= self.index.num_items]
            if bad or not history:
                raise ValueError(f"history {row} has unknown item ids {bad[:5]} (items are 1..{self.index.num_items})"
                                 if bad else f"history {row} is empty")
        samples = [Sample(0, tuple(history[-20:]), 1) for history in histories]
        encoded = evaluation_prompt_ids(samples, self.index.item_strings(), self.tokenizer)
        input_ids, attention_mask = left_pad(encoded, pad_token_id(self.tokenizer))
        items, scores = constrained_beam_search(self.eager.lm, input_ids, attention_mask, self.trie, num_beams,
                                                num_return_sequences=k, score_space=score_space,
                                                item_tokens=self.item_tokens)
        return torch.where(items >= 0, items + 1, -1), scores

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Writes tokenizer, LM config and weights (adapter included), projectors and tables,
        item index, trie and config into ``directory``, atomically (a temporary folder renamed
        into place), so that an interrupted save never leaves a half-written model."""
        directory = os.fspath(directory)
        parent = os.path.dirname(os.path.abspath(directory))
        os.makedirs(parent, exist_ok=True)
        temporary = temporary_folder(parent, ".saving-")
        try:
            self._write(temporary)
            if os.path.exists(directory):
                shutil.rmtree(directory)
            os.replace(temporary, directory)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise

    def _write(self, folder: str) -> None:
        lm = self.eager.lm
        lora = None
        if hasattr(lm, "peft_config"):
            lora = {k: (sorted(v) if isinstance(v, set) else v)
                    for k, v in lm.peft_config["default"].to_dict().items()}
            base = lm.get_base_model()
        else:
            base = lm
        self.tokenizer.save_pretrained(os.path.join(folder, "tokenizer"))
        base.config.save_pretrained(os.path.join(folder, "model"))
        # Tied weights share memory, which safetensors refuses: store each name's own copy.
        save_tensors(os.path.join(folder, "model", "weights.safetensors"),
                     {name: value.detach().cpu().clone().contiguous() for name, value in lm.state_dict().items()})
        gct = {f"projector/{name}": value.detach().cpu().contiguous()
               for name, value in self.eager.projectors.state_dict().items()}
        gct.update({f"table/{source}": self.eager.table(source).cpu() for source in self.eager.projectors})
        save_tensors(os.path.join(folder, "gct.safetensors"), gct)
        self.index.save(os.path.join(folder, "index"))
        self.trie.save(os.path.join(folder, "trie.bin"))
        with open(os.path.join(folder, "recommender.json"), "w") as out:
            json.dump({"format": FORMAT, "version": VERSION, "first_token_id": self.first_token_id,
                       "eager_config": asdict(self.eager.config), "lora": lora,
                       "architecture": type(base).__name__}, out, indent=2, default=str)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> "Recommender":
        """Reads what :meth:`save_pretrained` wrote; the result recommends exactly as the saved one."""
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        directory = os.fspath(directory)
        meta_path = os.path.join(directory, "recommender.json")
        if not os.path.exists(meta_path):
            raise FileNotFoundError(f"{directory}: no recommender.json (not a saved recommender)")
        with open(meta_path) as handle:
            meta = json.load(handle)
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise ValueError(f"{directory}: not a {FORMAT} v{VERSION} folder")
        tokenizer = AutoTokenizer.from_pretrained(os.path.join(directory, "tokenizer"))
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(os.path.join(directory, "model")))
        if meta["lora"] is not None:
            from peft import LoraConfig, get_peft_model

            # The base model is this folder's, not the path the adapter was trained from.
            settings = {k: v for k, v in meta["lora"].items()
                        if k in LoraConfig.__dataclass_fields__ and k != "base_model_name_or_path"}
            model = get_peft_model(model, LoraConfig(**settings))
        model.load_state_dict(load_file(os.path.join(directory, "model", "weights.safetensors")))
        gct = load_file(os.path.join(directory, "gct.safetensors"))
        tables = {key.split("/", 1)[1]: value for key, value in gct.items() if key.startswith("table/")}
        index = DualSourceIndex.load(os.path.join(directory, "index"))
        first = meta["first_token_id"]
        eager = EagerLLM(model.eval(), tables, EagerConfig(**meta["eager_config"]),
                         index_tokens=(first, first + index.num_tokens))
        eager.projectors.load_state_dict({key.split("/", 1)[1]: value for key, value in gct.items()
                                          if key.startswith("projector/")})
        recommender = cls(eager, tokenizer, index, first)
        saved_trie = eager_ext.ItemTrie.load(os.path.join(directory, "trie.bin"))
        if not torch.equal(saved_trie.codes, recommender.trie.codes):
            raise ValueError(f"{directory}: trie.bin does not match the item index")
        return recommender
