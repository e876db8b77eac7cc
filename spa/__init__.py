"""spa — Structurally Prune Anything: structural channel pruning of ONNX models."""

from .api import analyze, check, compute_plan, prune
from .errors import SpaError
from .plan import Plan

__all__ = ["analyze", "prune", "check", "compute_plan", "Plan", "SpaError"]
__version__ = "0.1.0"
