"""eager_llm: EAGER-LLM generative recommendation on Hugging Face causal LMs."""

__version__ = "0.1.0"
