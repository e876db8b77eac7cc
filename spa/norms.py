"""What the LayerNorm after a consumer does to the error its pruning leaves (LayerNorm-aware OBS statistics).

In a post-LN transformer block (BERT, all-MiniLM-L6-v2) the attention output projection and the MLP's second
matrix write into the residual stream: z = r + W x + b, then y = γ ⊙ (z − mean z) / σ(z) + β. An error δ = ΔW x in
z reaches the next block as γ ⊙ (δ − mean δ) / σ(z) (to first order): divided by the token's own stream
deviation σ(z), centred over the hidden width and weighted by γ. Plain OBSPA weighs every token and every output
row alike, so tokens whose stream is large (the [CLS]/[SEP]/punctuation positions of BERT carry a residual many
times the others') and rows the LayerNorm scales down dominate both the choice of channels and the weight update.

`following_norm` finds such a LayerNormalization behind a consumer; with it the statistics become
H = Σ (x/σ)(x/σ)ᵀ (every input row, and the bias column, divided by its token's σ), so that the OBS update is the
least-squares fit of the post-LayerNorm outputs, and the scoring reads the weight rows as γ ⊙ centred rows
(`NormAfter.rows`). `stream_energy` adds up the post-LayerNorm signal ‖γ ⊙ (z − mean z)/σ‖² per token: the
residual stream's own scale, by which spa.sensitivity's global allocation then divides a consumer's cost (the
fraction of the stream lost instead of the fraction of the consumer's own output).

Only the LayerNormalization op (opset 17+; what torch exports since then) over the last axis is recognised,
reached from the consumer's output through Add nodes alone (its bias and the residual).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ADD_HOPS = 3  # Add nodes between the consumer and the LayerNorm: its bias, the residual (either order)


@dataclass
class NormAfter:
    """The LayerNormalization that a consumer's output reaches: its input z (the residual stream), γ, ε."""

    x: str
    gamma: np.ndarray
    eps: float
    energy: float = 0.0  # Σ over the rows seen of ‖γ ⊙ (z − mean z)/σ‖²
    rows: int = 0

    def scale(self, z: np.ndarray) -> np.ndarray:
        """1/σ per token of a batch of z (all axes but the last flattened), float32; adds the batch's
        post-LayerNorm energy to `energy`."""
        z = np.asarray(z, dtype=np.float32).reshape(-1, z.shape[-1])
        c = z - z.mean(axis=1, keepdims=True)
        s = 1.0 / np.sqrt((c * c).mean(axis=1) + self.eps)
        g = self.gamma.astype(np.float32)
        self.energy += float(np.sum((c * s[:, None] * g) ** 2))
        self.rows += len(z)
        return s.astype(np.float32)

    def rows_of(self, w: np.ndarray) -> np.ndarray:
        """A (outputs, columns) weight matrix as the LayerNorm sees its error: rows centred over the outputs,
        then scaled by γ (the scoring's view; the update itself is the same for any per-row weighting)."""
        w = np.asarray(w, dtype=np.float64)
        return self.gamma.astype(np.float64)[:, None] * (w - w.mean(axis=0, keepdims=True))

    @property
    def stream_energy(self) -> float:
        """Mean post-LayerNorm energy per token (0 before any rows)."""
        return self.energy / self.rows if self.rows else 0.0


def following_norm(view, node_index: int, width: int) -> NormAfter | None:
    """The LayerNormalization (last axis, γ an initializer of `width` values) that node `node_index`'s only output
    reaches through at most ADD_HOPS Add nodes, each tensor on the way used once; None if there is none."""
    nodes = view.model.graph.node
    t = nodes[node_index].output[0]
    for _ in range(ADD_HOPS + 1):
        users = view.consumers.get(t, [])
        if len(users) != 1:
            return None
        n = nodes[users[0]]
        if n.op_type == "LayerNormalization" and n.input[0] == t and len(n.input) > 1 and n.input[1] in view.inits:
            axis = next((a.i for a in n.attribute if a.name == "axis"), -1)
            rank = len(view.shape(t) or ())
            gamma = np.asarray(view.array(n.input[1])).reshape(-1)
            if (axis == -1 or (rank and axis == rank - 1)) and len(gamma) == width:
                eps = next((a.f for a in n.attribute if a.name == "epsilon"), 1e-5)
                return NormAfter(t, gamma, float(eps))
            return None
        if n.op_type != "Add":
            return None
        t = n.output[0]
    return None
