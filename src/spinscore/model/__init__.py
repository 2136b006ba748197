"""The O(3)-equivariant score network, and the checker of its symmetries."""

from spinscore.model.equivariance import (
    EquivarianceErrors,
    assert_equivariant,
    equivariance_errors,
)
from spinscore.model.score_model import ScoreModel, count_parameters

__all__ = [
    "EquivarianceErrors",
    "ScoreModel",
    "assert_equivariant",
    "count_parameters",
    "equivariance_errors",
]
