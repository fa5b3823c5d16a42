"""The end-to-end pipeline behind the `eager-llm` command line: a config, a run folder, the
steps (prepare, embed, index, train, evaluate, bench) and the report."""

from .config import ConfigError, RunConfig, resolve_values
from .rundir import RunDir

__all__ = ["ConfigError", "RunConfig", "RunDir", "resolve_values"]
