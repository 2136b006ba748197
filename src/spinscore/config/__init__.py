"""Typed, validated configuration: one frozen model per stage, composed into `RunConfig`.

A YAML file is the single source of truth for every parameter of a run. `load_config` reads it,
applies `--set section.key=value` overrides and validates everything at the door; errors name the
file, the key and what was expected (`ConfigError`).
"""


from spinscore.config.analysis import AnalysisConfig, PartitionSettings, TrustSettings
from spinscore.config.load import apply_override, load_config, parse_config, require_spin_config
from spinscore.config.sections import (
    DATA_SECTIONS,
    DiffusionConfig,
    GenerationConfig,
    ModelConfig,
    ReproduceConfig,
    RunConfig,
    SimulationConfig,
    TimeComponent,
    TrainConfig,
)
from spinscore.config.system import SystemConfig

__all__ = ["DATA_SECTIONS", "AnalysisConfig", "DiffusionConfig", "GenerationConfig", "ModelConfig",
           "PartitionSettings", "TrustSettings", "ReproduceConfig", "RunConfig", "SimulationConfig",
           "SystemConfig", "TimeComponent", "TrainConfig", "apply_override", "load_config",
           "parse_config", "require_spin_config"]
