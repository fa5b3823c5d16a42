"""eager_llm: EAGER-LLM generative recommendation on Hugging Face causal LMs.

The main objects: :class:`EagerLLM` (a causal LM with index tokens and the GCT losses) and
:class:`Recommender` (the trained whole: model, tokenizer, item index and trie, with
``recommend``, ``save_pretrained`` and ``from_pretrained``). The command line is ``eager-llm``.
"""

__version__ = "0.1.0"

from .model import EagerConfig, EagerLLM, Recommender  # noqa: E402

__all__ = ["EagerConfig", "EagerLLM", "Recommender", "__version__"]
