"""The order of the gallery: the lessons first (from one Gaussian to EM, then the wholesale
segments), then from small data to streams.
"""

import os

LESSONS = (
    "plot_gaussians_to_em.py",
    "wholesale_segmentation.py",
    "plot_soft_vs_hard.py",
    "plot_model_selection.py",
    "plot_out_of_core_and_dask.py",
    "plot_online_em.py",
)


class LessonOrder:
    """sphinx-gallery sort key: ``LESSONS`` in order, any other example after them by name."""

    def __init__(self, src_dir):
        self.src_dir = src_dir

    def __call__(self, filename):
        name = os.path.basename(filename)
        return (LESSONS.index(name) if name in LESSONS else len(LESSONS), name)

    def __repr__(self):
        return "<LessonOrder>"
