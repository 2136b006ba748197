"""`python -m spinscore.cli` (and torchrun -m spinscore.cli)."""

from spinscore.cli import main

main()
