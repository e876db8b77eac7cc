"""spa — Structurally Prune Anything: structural channel pruning of ONNX models."""

from typing import Any

__all__ = ["Plan", "PruneOptions", "SpaError", "analyze", "check", "compute_plan", "prune"]
__version__ = "0.1.0"

# imported on first use, so `python -m spa` starts light and a Ctrl-C at start-up ends in one line
_HOME = {"analyze": "api", "prune": "api", "check": "api", "compute_plan": "api", "PruneOptions": "api", "Plan": "plan",
         "SpaError": "errors"}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        import importlib

        return getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    raise AttributeError(f"module 'spa' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
