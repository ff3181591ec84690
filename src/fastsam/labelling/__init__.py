"""Labelling workflows: zero-shot dataset annotation (:mod:`.annotate`) and a Label Studio ML backend
(:mod:`.label_studio`).

This layer sits beside ``batch``/``server``: it uses the predictor, engine, results, prompts, ops and io, and is
used only by the command line.
"""

from .annotate import AnnotateSettings, AnnotateSummary, annotate_images, label_result
from .classes import BACKGROUND_PROMPTS, ClassAssignment, assign_classes, parse_classes
from .overlaps import resolve_overlaps

__all__ = [
    "BACKGROUND_PROMPTS",
    "AnnotateSettings",
    "AnnotateSummary",
    "ClassAssignment",
    "annotate_images",
    "assign_classes",
    "label_result",
    "parse_classes",
    "resolve_overlaps",
]
