""""""

from spinscore.geometry.sphere import (
    T_CROSS,
    exp_map,
    geodesic_angle,
    heat_kernel_log_density,
    heat_kernel_sample,
    heat_kernel_score,
    heat_kernel_target,
    log_map,
    random_orthogonal,
    tangent_project,
    uniform_sphere,
)

__all__ = [
    "T_CROSS",
    "exp_map",
    "geodesic_angle",
    "heat_kernel_log_density",
    "heat_kernel_sample",
    "heat_kernel_score",
    "heat_kernel_target",
    "log_map",
    "random_orthogonal",
    "tangent_project",
    "uniform_sphere",
]
