"""Which rule files a config names: the shipped defaults, then its globs; kept apart from the rule jobs so that
``healwatch check config`` finds them without loading the evaluator (and numpy)."""

from __future__ import annotations

import glob
from importlib import resources
from pathlib import Path

from agent.config import AgentConfig
from rules.rulefile import expand_rule_files


def default_rule_files() -> list[str]:
    """The rule files shipped in the ``rules`` package (host, service and agent rules)."""
    return sorted(str(path) for path in resources.files("rules").iterdir() if path.name.endswith(".rules.yaml"))


def rule_files_of(config: AgentConfig, config_dir: str | Path) -> list[str]:
    """Every rule file the config names (globs relative to its directory), defaults first; raises SourceError."""
    files = default_rule_files() if config.default_rules else []
    files.extend(f for f in expand_rule_files(config.rule_files, config_dir) if f not in files)
    return files


def unmatched_rule_globs(config: AgentConfig, config_dir: str | Path) -> list[str]:
    """The config's rule_files globs that match no file yet: valid (a file may appear later), worth a warning."""
    return [p for p in config.rule_files if glob.has_magic(p) and not expand_rule_files([p], config_dir)]
