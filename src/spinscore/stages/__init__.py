"""The stage layer: one function per stage of the pipeline. Each takes a typed config (or a
checkpoint) and paths, calls the libraries (numbers in, numbers out) and writes the stage's
files: JSON of its numbers, PNG figures, data sets. `cli` and `reproduce` call these; nothing
below this layer writes figures or reports."""

from spinscore.stages.analyses import (
    extract,
    generate,
    generate_for_test_sequence,
    ood,
    partition,
)
from spinscore.stages.data import inspect_dataset, mixing, simulate, write_json
from spinscore.stages.report import report
from spinscore.stages.thermo import thermo
from spinscore.stages.train import train

__all__ = ["extract", "generate", "generate_for_test_sequence", "inspect_dataset", "mixing",
           "ood", "partition", "report", "simulate", "thermo", "train", "write_json"]
