"""Placeholder until the kernels restructure lands."""
from ._kernels import KERNELS

update_min_dist = KERNELS["update_min_dist"]
candidate_potential = KERNELS["candidate_potential"]
lloyd_step = KERNELS["lloyd_step"]
