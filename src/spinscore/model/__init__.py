"""The O(3)-equivariant score network."""

from spinscore.model.score_model import ScoreModel, count_parameters, pairwise_field

__all__ = ["ScoreModel", "count_parameters", "pairwise_field"]
