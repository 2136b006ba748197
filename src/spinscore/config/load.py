"""Reading a configuration: YAML, `--set` overrides, validation with errors that name the
file and the key."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from spinscore.config.molecule import MoleculeRunConfig, is_molecule_config
from spinscore.config.sections import RunConfig
from spinscore.errors import ConfigError


def apply_override(data: dict[str, Any], assignment: str, source: str = "--set") -> None:
    """Apply one `dotted.key=value` assignment in place; the value is parsed as YAML."""
    if "=" not in assignment:
        raise ConfigError(f"{source}: expected section.key=value, got {assignment!r}")
    path, _, raw = assignment.partition("=")
    keys = path.strip().split(".")
    if not all(keys):
        raise ConfigError(f"{source}: malformed key {path!r}")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} {path}: cannot parse value {raw!r}: {yaml_problem(exc)}"
                          ) from None
    node = data
    for depth, key in enumerate(keys[:-1]):
        key = _match_key(node, key)
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: {'.'.join(keys[: depth + 1])} is not a section")
        node = child
    node[_match_key(node, keys[-1])] = value


def _match_key(node: dict, key: str) -> Any:
    """YAML reads `1:` as an int key; let `--set system.couplings.1.AA=...` address it."""
    for existing in node:
        if str(existing) == key:
            return existing
    return int(key) if key.isdigit() else key


def yaml_problem(exc: yaml.YAMLError) -> str:
    """One line for a YAML error: the problem and where (PyYAML's message spans lines)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return " ".join(f"{problem}{where}".split())


def parse_config(data: Any, source: str = "<config>") -> RunConfig | MoleculeRunConfig:
    """Validate a mapping as a `RunConfig` (spins), or a `MoleculeRunConfig` when its system
    section holds `molecule`; raise `ConfigError` naming `source` and the key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of sections, got {type(data).__name__}")
    model = MoleculeRunConfig if is_molecule_config(data) else RunConfig
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source, model)) from None


def load_config(path: str | Path, overrides: tuple[str, ...] | list[str] = ()
                ) -> RunConfig | MoleculeRunConfig:
    """Read a YAML config file, apply `section.key=value` overrides, validate."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: a folder, not a config file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (a YAML config was expected)") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {yaml_problem(exc)}") from None
    data = data if data is not None else {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    for assignment in overrides:
        apply_override(data, assignment, source=f"{path}: --set")
    system = data.get("system")
    if isinstance(system, dict) and isinstance(system.get("graph"), str):
        system["graph"] = str(path.parent / system["graph"])  # relative to the config file
    source = str(path) + (" (with --set overrides)" if overrides else "")
    return parse_config(data, source)


def require_spin_config(config: RunConfig | MoleculeRunConfig, what: str) -> RunConfig:
    """`config` if it describes a spin system; `ConfigError` for a molecular one."""
    if isinstance(config, MoleculeRunConfig):
        raise ConfigError(f"{what}: the config describes a molecule (system.molecule); this is for "
                          "spin systems (molecules: spinscore simulate, inspect, train, readout, langevin)")
    return config


def _format_validation_error(exc: ValidationError, source: str, model: Any = RunConfig) -> str:
    """One line: `source: key: what`, further problems after "; " (an error is one line)."""
    problems = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            msg = "unknown key" + _suggestion(model, err["loc"])
        elif err["type"] == "missing":
            msg = "required key is missing"
        else:
            msg = err["msg"].removeprefix("Value error, ")
            if "input" in err and err["type"] != "value_error":
                msg += f" (got {err['input']!r})"
        problems.append(f"{loc}: {msg}" if loc else msg)
    return f"{source}: " + "; ".join(problems)


def _suggestion(model: Any, loc: tuple) -> str:
    for part in loc[:-1]:
        field = model.model_fields.get(str(part)) if hasattr(model, "model_fields") else None
        model = field.annotation if field is not None else None
    if model is None or not hasattr(model, "model_fields"):
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
