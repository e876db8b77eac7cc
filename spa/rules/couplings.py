"""What the analysis collects while the rules run: links between atoms (single indices along a tensor axis),
frozen slots with their reasons, lossy slots, initializer roles. Rules write it through `NodeCtx`; the analysis
(spa.analysis) turns it into channel groups. It lives in the rule layer so that rules depend on nothing
above them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..view import ModelView

Slot = tuple[str, int]


class Couplings:
    """Collects links between atoms, frozen slots, freed slots and initializer roles."""

    def __init__(self, view: "ModelView", hidden: bool = True, group_conv: str = "positions") -> None:
        self.view = view
        self.hidden = hidden  # False: slots whose removal changes normalisation statistics are frozen
        self.group_conv = group_conv  # grouped convs: "positions" (in-group positions) or "groups" (whole groups)
        self.lossy: dict[Slot, str] = {}
        self.lossy_sites: list[tuple[str, str, int]] = []  # (node output, tensor, axis) of lossy statistics
        self.offset: dict[Slot, int] = {}
        self.size: dict[Slot, int] = {}
        self.n_atoms = 0
        self._ea: list[np.ndarray] = []
        self._eb: list[np.ndarray] = []
        self.frozen: dict[Slot, str] = {}
        self.frozen_tensors: dict[str, str] = {}
        self.roles: dict[Slot, tuple[str, float]] = {}
        self.mentioned: set[Slot] = set()
        self.freed_tensors: set[str] = set()
        self.chan: set[Slot] = set()
        self.quantized: set[str] = set()  # integer initializers that hold (quantized) weights, biases, zero points
        self.role_alias: dict[str, tuple[str, Callable[[float], float]]] = {}  # see alias_roles
        self.node_reason: str | None = None  # slots known to carry parameterised channels (seen in graph order)

    # -- atoms
    def _dim(self, name: str, axis: int) -> int | None:
        return self.view.period(name, axis)

    def atoms(self, slot: Slot) -> int:
        off = self.offset.get(slot)
        if off is None:
            n = self.size[slot]
            off = self.n_atoms
            self.offset[slot] = off
            self.n_atoms += n
        return off

    def link(self, a: str, ax: int, b: str, bx: int, ia, ib, where: str) -> bool:
        sa, sb = (a, ax), (b, bx)
        self.mentioned.add(sa)
        self.mentioned.add(sb)
        da, db = self._dim(a, ax), self._dim(b, bx)
        if da is None or db is None:
            reason = f"{where}: size of {a if da is None else b} axis {ax if da is None else bx} is unknown"
            self.frozen.setdefault(sa, reason)
            self.frozen.setdefault(sb, reason)
            return False
        if ia is None and ib is None and da != db:
            reason = f"{where}: {a}[{ax}] ({da}) and {b}[{bx}] ({db}) differ"
            self.frozen.setdefault(sa, reason)
            self.frozen.setdefault(sb, reason)
            return False
        ia = np.arange(da) if ia is None else np.asarray(ia, dtype=np.int64)
        ib = np.arange(db) if ib is None else np.asarray(ib, dtype=np.int64)
        assert ia.shape == ib.shape, (where, ia.shape, ib.shape)
        self.size[sa] = da
        self.size[sb] = db
        oa, ob = self.atoms(sa), self.atoms(sb)
        self._ea.append(ia + oa)
        self._eb.append(ib + ob)
        if sa in self.chan or sb in self.chan or a in self.view.inits or b in self.view.inits:
            self.chan.add(sa)
            self.chan.add(sb)
        return True

    def is_channel(self, slot: Slot) -> bool:
        """Heuristic used only to pick which axis of a merging reshape to follow (the others freeze)."""
        return slot in self.chan

    def freeze(self, name: str, axis: int, reason: str) -> None:
        self.mentioned.add((name, axis))
        self.frozen.setdefault((name, axis), reason)

    def freeze_tensor(self, name: str, reason: str) -> None:
        self.frozen_tensors.setdefault(name, reason)

    def mark_lossy(self, name: str, axis: int, reason: str, node: str = "") -> None:
        self.mentioned.add((name, axis))
        if self.hidden:
            self.lossy.setdefault((name, axis), reason)
            self.lossy_sites.append((node, name, axis))
        else:
            self.frozen.setdefault((name, axis), f"{reason}; kept by --no-hidden")

    def free(self, name: str, axis: int | None) -> None:
        if axis is None:
            self.freed_tensors.add(name)
        else:
            self.mentioned.add((name, axis))

    def role(self, name: str, axis: int, role: str, neutral: float) -> None:
        self.roles.setdefault((name, axis), (role, neutral))
        alias = self.role_alias.get(name)
        if alias is not None:  # a dequantized weight: the role belongs to its integer codes
            src, code = alias
            self.roles.setdefault((src, axis), (role, code(neutral)))

    def alias_roles(self, tensor: str, source: str, code: Callable[[float], float]) -> None:
        """`tensor` is `source` element by element (a DequantizeLinear of an integer initializer): roles given to
        `tensor` later also tag `source`, with the neutral value translated by `code` (a real value → its code)."""
        self.role_alias[tensor] = (source, code)

    def edges(self) -> tuple[np.ndarray, np.ndarray]:
        if not self._ea:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(self._ea), np.concatenate(self._eb)
