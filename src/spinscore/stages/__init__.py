"""The stage layer: one function per stage of the pipeline. Each takes a typed config (or a
checkpoint) and paths, calls the libraries (numbers in, numbers out) and writes the stage's
files: JSON of its numbers, PNG figures, data sets. `cli` and `reproduce` call these; nothing
below this layer writes figures or reports.

The stages are imported on first use, so `spinscore simulate` does not pay for torch (the
modules are not named after their functions, so that importing one never shadows a function).
"""

import importlib

_HOME = {
    "extract": "analyses", "generate": "analyses", "generate_for_test_sequence": "analyses",
    "ood": "analyses", "partition": "analyses",
    "inspect_dataset": "data", "mixing": "data", "simulate": "data", "write_json": "data",
    "data_config": "molecules", "is_molecule_file": "molecules", "md_check": "molecules",
    "simulate_molecule": "molecules", "train_molecule": "molecule_training",
    "readout_molecule": "molecule_readout", "generate_molecule": "molecule_generation",
    "report": "reporting", "molecule_report": "reporting", "thermo": "thermodynamics", "train": "training",
}
__all__ = sorted(_HOME)


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module 'spinscore.stages' has no attribute {name!r}")
    return getattr(importlib.import_module(f"spinscore.stages.{_HOME[name]}"), name)
