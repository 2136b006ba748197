"""Geometry of S^2: exp/log maps, random O(3) elements (`sphere`), the heat kernel
(`heat_kernel`)."""

from spinscore.geometry import heat_kernel, sphere
from spinscore.geometry.heat_kernel import *  # noqa: F403 - the public API, listed there
from spinscore.geometry.sphere import *  # noqa: F403 - the public API, listed there

__all__ = sphere.__all__ + heat_kernel.__all__
