"""Geometry of S^2: exp/log maps, random O(3) elements, the heat kernel (see `sphere`)."""

from spinscore.geometry import sphere
from spinscore.geometry.sphere import *  # noqa: F403 - the public API of `sphere`, listed there

__all__ = sphere.__all__
