"""Label-free recovery: the loss that makes a pruned model (the student) match its original (the teacher).

``spa finetune PRUNED.onnx --teacher ORIGINAL.onnx --data unlabeled.npz`` trains the student on inputs alone.
The teacher runs in onnxruntime (its values are computed once and cached when they fit in ``CACHE_BYTES``,
otherwise per batch); every floating-point output of the teacher is matched, each by the loss that suits it:

- ``kl``: class scores (a Softmax/LogSoftmax output, e.g. a classifier's probabilities or a CTC recogniser's
  per-step distribution; or an output whose name says logits/class/prob/score).  Hinton's temperature-softened
  KL(teacher || student) over the class axis, times T², averaged over all other positions.  When the output is
  a Softmax of a tensor both graphs share, that tensor (the logits) is compared, so nothing underflows; else
  probabilities are compared through their logarithms.
- ``kl+ctc``: a CTC recogniser's per-step distribution (N, T, C), blank at class CTC_BLANK (only when asked,
  ``--output-loss NAME=kl+ctc``): the ``kl`` above plus the CTC loss of the teacher's greedy transcription
  (per step the likeliest class, repeats merged, blanks dropped; Kim and Rush's sequence-level distillation):
  the student is also rewarded for reading the teacher's text along any alignment, not only the teacher's own.
- ``bce``: per-element probabilities (a Sigmoid output: a detector's text or object map, multi-label scores;
  only when asked, ``--output-loss NAME=bce``).  The Bernoulli KL(teacher || student) of each element, averaged:
  binary cross-entropy against the teacher's probability, less its entropy, so a perfect match scores 0.  Its
  gradient does not vanish where the student is confidently wrong, as the squared error of a saturated
  probability's does.  When the output is a Sigmoid of a tensor both graphs share, that tensor is compared
  through log-sigmoids, so nothing underflows; else the probabilities themselves (clipped to 1e-7 from 0 and 1;
  values outside [0, 1] are refused).
- ``mse``: anything else (regression and probability maps, embeddings, boxes): the mean squared error divided
  by the teacher's mean square over the data, so outputs of any scale weigh alike.  A per-token output (N, T, ...)
  of a model that takes a padding mask (an integer or bool (N, T) input named like ``attention_mask``) is compared
  only where the mask is non-zero: a padded position's hidden state is not part of what the model computes for
  the sentence (mean pooling and attention skip it), and matching it would spend the student's capacity there.
- ``off``: not matched (``--output-loss NAME=off``).

The per-output choice is reported with its loss before and after (``FinetuneReport.outputs``).

Intermediate features (``--plan PLAN.json``, the plan the student was pruned with: ``spa prune --save-plan``): the
student's tensors at the pruned groups' boundaries are matched too.  A boundary is an activation of a pruned group
that a layer of the group consumes (the input of the next convolution or matrix product, where OBSPA's compensation
acts).  The student holds the teacher's channels that the plan keeps, so its tensor is compared with the teacher's
restricted to them: nothing is learnt to map one onto the other.  Each is an ``mse`` scaled by the teacher value's
mean square; their mean, times ``feature_weight``, is added to the outputs' losses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

from .errors import BadArgument

__all__ = ["CACHE_BYTES", "FEATURE_WEIGHT", "KINDS", "Distillation", "FeatureSite", "OutputLoss", "feature_sites",
           "parse_output_loss"]

KINDS = ("kl", "kl+ctc", "bce", "mse", "off")
_KL_KINDS = ("kl", "kl+ctc")  # the kinds compared by the softened KL (kl+ctc adds the CTC term)
CTC_BLANK = 0  # kl+ctc: the blank's class index (PaddleOCR's CTC heads; 0 is also torch's default)
CACHE_BYTES = 1 << 30  # teacher values kept in memory (else recomputed per batch)
_CLASS_NAME = re.compile(r"logit|class|cls|prob|score", re.IGNORECASE)
_SOFTMAX = ("Softmax", "LogSoftmax")
_MASK_NAME = re.compile(r"attention_mask|input_mask|padding_mask", re.IGNORECASE)
FEATURE_WEIGHT = 1.0  # --plan: the intermediate features' mean loss against the outputs' (one output weighs 1)
_CONSUMERS = ("Conv", "ConvTranspose", "Gemm", "MatMul")  # layers whose input a boundary feature is


@dataclass
class OutputLoss:
    """How one graph output is matched: ``value`` is the tensor compared (the output, or the logits before it)."""

    name: str
    kind: str
    why: str
    value: str = ""
    axis: int = -1  # kl: the class axis (after flattening the trailing axes for opset < 13 Softmax)
    flatten_from: int | None = None  # kl: opset < 13 Softmax flattens the axes from here into the class axis
    log: bool = False  # kl: the value holds probabilities; compare their logarithms
    scale: float = 1.0  # mse: the teacher value's mean square over the data
    mask: str = ""  # mse: the padding-mask input; positions (N, T) where it is 0 are not compared
    before: float | None = None
    after: float | None = None

    def as_dict(self) -> dict:
        return {"output": self.name, "loss": self.kind, "why": self.why, "compared": self.value,
                "before": self.before, "after": self.after}


@dataclass
class FeatureSite:
    """One intermediate tensor matched (``--plan``): the student's copy holds the teacher's indices ``kept``
    along each pruned axis."""

    tensor: str
    kept: dict[int, np.ndarray]
    scale: float = 1.0  # the teacher value's mean square over the data (over the positions compared)
    mask: str = ""  # the padding-mask input, for a per-token (N, T, ...) tensor: padded positions are not compared

    def of_teacher(self, value: np.ndarray) -> np.ndarray:
        for axis, idx in self.kept.items():
            value = np.take(value, idx, axis=axis)
        return value


def feature_sites(student: onnx.ModelProto, teacher: onnx.ModelProto, plan) -> list[FeatureSite]:
    """The tensors at the boundaries of the groups ``plan`` prunes (see the module doc) that both graphs hold,
    with the teacher indices the student keeps.  Raises BadArgument if the plan is not one of ``teacher``."""
    from .api import analyze
    from .plan import keep_mask

    a = analyze(teacher).analysis
    try:
        keep = keep_mask(a, plan)
    except BadArgument as e:
        raise BadArgument(f"--plan does not fit the teacher: {e}") from None
    view = a.view
    nodes = view.model.graph.node
    in_student = {o for n in student.graph.node for o in n.output}
    floats = {n for n, t in view.elem_types.items() if t in _FLOAT_TYPES}
    sites: dict[str, FeatureSite] = {}
    for g in a.groups:
        if keep[g.comps].all():
            continue
        params = {m.tensor for m in g.params}
        for m in g.members:
            name = m.tensor
            if m.is_param or name not in in_student or name not in floats or name in view.graph_outputs:
                continue
            if not any(nodes[c].op_type in _CONSUMERS and params.intersection(nodes[c].input)
                       for c in view.consumers.get(name, [])):
                continue
            shape = view.shapes.get(name)
            site = sites.setdefault(name, FeatureSite(name, {}))
            for axis in range(len(shape or ())):
                comps = a.slot_comps.get((name, axis))
                if comps is not None and shape[axis] is not None and not keep[comps].all():
                    site.kept[axis] = np.nonzero(keep[comps])[0]
    return [s for s in sites.values() if s.kept]


def parse_output_loss(items: list[str] | None) -> dict[str, str]:
    """``["NAME=kl", ...]`` (the CLI's repeated ``--output-loss``) as a mapping."""
    out: dict[str, str] = {}
    for it in items or []:
        name, sep, kind = it.rpartition("=")
        if not sep or not name or kind not in KINDS:
            raise BadArgument(f"--output-loss {it!r}: expected NAME={'|'.join(KINDS)}")
        out[name] = kind
    return out


def _dims(v: onnx.ValueInfoProto) -> list[int | None]:
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in v.type.tensor_type.shape.dim]


def _check_interfaces(student: onnx.ModelProto, teacher: onnx.ModelProto) -> None:
    """The teacher must take the student's inputs (names, types, static sizes) and give its outputs (names)."""
    def ins(m):
        inits = {i.name for i in m.graph.initializer}
        return {i.name: i for i in m.graph.input if i.name not in inits}

    s_in, t_in = ins(student), ins(teacher)
    if set(s_in) != set(t_in):
        raise BadArgument(f"--teacher takes inputs {sorted(t_in)}, the student {sorted(s_in)}: distil from the "
                          f"model the student was pruned from")
    for name, sv in s_in.items():
        tv = t_in[name]
        sd, td = _dims(sv), _dims(tv)
        same = len(sd) == len(td) and all(a is None or b is None or a == b for a, b in zip(sd, td))
        if sv.type.tensor_type.elem_type != tv.type.tensor_type.elem_type or not same:
            raise BadArgument(f"--teacher input {name!r} is {td} ({onnx.TensorProto.DataType.Name(tv.type.tensor_type.elem_type)}), "
                              f"the student's {sd} ({onnx.TensorProto.DataType.Name(sv.type.tensor_type.elem_type)})")
    s_out, t_out = [o.name for o in student.graph.output], [o.name for o in teacher.graph.output]
    if set(s_out) != set(t_out):
        raise BadArgument(f"--teacher gives outputs {t_out}, the student {s_out}: distil from the model the "
                          f"student was pruned from")


_FLOAT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16)


def _is_float(v: onnx.ValueInfoProto) -> bool:
    return v.type.tensor_type.elem_type in _FLOAT_TYPES


def _padding_mask(model: onnx.ModelProto) -> onnx.ValueInfoProto | None:
    """The model's padding mask: its one 2-D integer or bool input named like ``attention_mask`` (else None)."""
    inits = {i.name for i in model.graph.initializer}
    found = [i for i in model.graph.input if i.name not in inits and _MASK_NAME.search(i.name)
             and len(i.type.tensor_type.shape.dim) == 2 and not _is_float(i)]
    return found[0] if len(found) == 1 else None


def _per_position(out: onnx.ValueInfoProto, mask: onnx.ValueInfoProto | None) -> bool:
    """Whether ``out`` is (N, T, ...) over the mask's (N, T) positions (static sizes, where known, agree)."""
    if mask is None:
        return False
    o, m = _dims(out), _dims(mask)
    return len(o) >= 3 and all(a is None or b is None or a == b for a, b in zip(o[:2], m))


def _shared_input(t_node: onnx.NodeProto, s_node: onnx.NodeProto | None) -> str | None:
    """The input of the teacher's output node (a Softmax's or Sigmoid's logits) when the student's same output
    comes from the same op on the same tensor: that tensor is compared instead, in both graphs."""
    if s_node is not None and s_node.op_type == t_node.op_type and s_node.input[0] == t_node.input[0]:
        return t_node.input[0]
    return None


def _plan(student: onnx.ModelProto, teacher: onnx.ModelProto, overrides: dict[str, str]) -> list[OutputLoss]:
    names = [o.name for o in student.graph.output]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise BadArgument(f"--output-loss names {unknown}, not outputs of the model (outputs: {names})")
    opset = next((o.version for o in teacher.opset_import if o.domain in ("", "ai.onnx")), 13)
    t_prod = {o: n for n in teacher.graph.node for o in n.output}
    s_prod = {o: n for n in student.graph.node for o in n.output}
    mask = _padding_mask(student)
    plan = []
    for o in student.graph.output:
        node = t_prod.get(o.name)
        op = node.op_type if node is not None else None
        if o.name in overrides:
            kind, why = overrides[o.name], "--output-loss"
        elif not _is_float(o):
            kind, why = "off", "not floating point"
        elif op in _SOFTMAX:
            kind, why = "kl", f"a {op} output"
        elif _CLASS_NAME.search(o.name):
            kind, why = "kl", "named like class scores"
        else:
            kind, why = "mse", "not class scores"
        ol = OutputLoss(o.name, kind, why, value=o.name)
        if kind == "mse" and _per_position(o, mask):
            ol.mask = mask.name
            ol.why += f"; positions where {mask.name} is 0 ignored"
        if kind in _KL_KINDS:
            rank = len(o.type.tensor_type.shape.dim)
            if op in _SOFTMAX:
                axis = next((a.i for a in node.attribute if a.name == "axis"), -1 if opset >= 13 else 1)
                if opset < 13:
                    ol.flatten_from, axis = axis, -1
                ol.axis = axis
                ol.value = _shared_input(node, s_prod.get(o.name)) or o.name
                ol.log = ol.value == o.name and op == "Softmax"
            else:
                ol.axis = 1 if rank != 3 else 2  # (N, C), (N, T, C) sequences, (N, C, H, W) per-pixel classes
        if kind == "bce" and op == "Sigmoid":
            ol.value = _shared_input(node, s_prod.get(o.name)) or o.name
        plan.append(ol)
    if all(p.kind == "off" for p in plan):
        raise BadArgument("no output is left to distil (all are non-float or --output-loss NAME=off)")
    return plan


class Distillation:
    """The distillation objective of ``spa.finetune.finetune`` (same interface as its labelled one)."""

    def __init__(self, student: onnx.ModelProto, teacher: onnx.ModelProto, inputs: dict[str, np.ndarray], step: int,
                 temperature: float, overrides: dict[str, str], plan=None,
                 feature_weight: float = FEATURE_WEIGHT) -> None:
        from .verify import session

        if not temperature > 0:
            raise BadArgument(f"--temperature must be > 0 (got {temperature})")
        if not (feature_weight >= 0 and np.isfinite(feature_weight)):
            raise BadArgument(f"--feature-weight must be >= 0 (got {feature_weight})")
        _check_interfaces(student, teacher)
        self.T = float(temperature)
        self.plan = _plan(student, teacher, overrides)
        self.active = [p for p in self.plan if p.kind != "off"]
        self.sites = feature_sites(student, teacher, plan) if plan is not None and feature_weight > 0 else []
        if plan is not None and feature_weight > 0 and not self.sites:
            raise BadArgument("--plan prunes no tensor that a layer consumes in both models: no feature to match")
        self.feature_weight = float(feature_weight)
        self.features = OutputLoss("(features)", "mse", f"--plan: the pruned groups' boundaries, weight {feature_weight:g}",
                                   value=f"{len(self.sites)} tensors") if self.sites else None
        self.values = [p.value for p in self.active]
        self.fetch = list(dict.fromkeys(self.values + [s.tensor for s in self.sites]))  # outputs may share a tensor
        self.extra = tuple(v for v in self.fetch if v not in {o.name for o in student.graph.output})
        t = onnx.ModelProto()
        t.CopyFrom(teacher)
        have = {o.name for o in t.graph.output}
        elem = {o.name: o.type.tensor_type.elem_type for o in t.graph.output}
        for p in self.active:
            if p.value not in have:
                t.graph.output.append(helper.make_tensor_value_info(p.value, elem[p.name], None))
                have.add(p.value)
        for site in self.sites:
            if site.tensor not in have:
                t.graph.output.append(onnx.ValueInfoProto(name=site.tensor))
                have.add(site.tensor)
        self.sess = session(t)
        self.inputs = inputs
        self.n = len(next(iter(inputs.values())))
        self.step = step
        self.cache: list[np.ndarray] | None = None
        first = self._teacher(np.arange(min(step, self.n)))
        per_sample = sum(v.nbytes for v in first) / len(first[0])
        if per_sample * self.n <= CACHE_BYTES:
            chunks = [first] + [self._teacher(np.arange(i, min(i + step, self.n))) for i in range(step, self.n, step)]
            self.cache = [np.concatenate([c[k] for c in chunks]) for k in range(len(first))]
        ref = self.cache if self.cache is not None else first
        mask = _padding_mask(student)
        for site, v in zip(self.sites, ref[len(self.active):]):
            m = inputs[mask.name][: len(v)] if mask is not None else None
            if m is not None and v.ndim >= 3 and v.shape[:2] == m.shape:  # per token, as the outputs (module doc)
                site.mask = mask.name
            site.scale = self._mean_square(v, m if site.mask else None)
        for p, v in zip(self.active, ref):
            if p.kind == "mse":
                p.scale = self._mean_square(v, inputs[p.mask][: len(v)] if p.mask else None)
            elif p.kind == "bce" and p.value == p.name and v.size and not (v.min() >= 0 and v.max() <= 1):
                raise BadArgument(f"--output-loss {p.name}=bce: the teacher's {p.name!r} holds values outside [0, 1] "
                                  f"({float(v.min()):.3g} to {float(v.max()):.3g}); bce compares probabilities")
            elif p.kind in _KL_KINDS and p.value == p.name and not p.log and v.size and v.min() >= 0:
                s = v.sum(axis=p.axis) if p.flatten_from is None else v.reshape(*v.shape[: p.flatten_from], -1).sum(-1)
                p.log = bool(np.allclose(s, 1, atol=1e-3))  # probabilities (e.g. a softmax inside a custom op)

    @classmethod
    def _mean_square(cls, v: np.ndarray, mask: np.ndarray | None) -> float:
        """The teacher value's mean square (in float64), over the positions where ``mask`` (N, T) is non-zero when
        given: an mse loss's scale."""
        sq = np.square(v.astype(np.float64))
        if mask is None:
            return float(np.mean(sq)) + 1e-12
        w = cls._weights(mask, sq.shape)
        return float((sq * w).sum() / max(np.broadcast_to(w, sq.shape).sum(), 1.0)) + 1e-12

    @staticmethod
    def _weights(mask, shape: tuple[int, ...]):
        """The padding mask (N, T) as 0/1 weights broadcast over the output's trailing axes (numpy or torch)."""
        w = (mask != 0).reshape(*mask.shape, *[1] * (len(shape) - 2))
        return w.float() if hasattr(w, "float") else w.astype(np.float64)

    def _teacher(self, idx: np.ndarray) -> list[np.ndarray]:
        return self._teacher_on({k: np.ascontiguousarray(v[idx]) for k, v in self.inputs.items()})

    def _teacher_on(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        by = dict(zip(self.fetch, self.sess.run(self.fetch, feeds)))
        return [by[v] for v in self.values] + [s.of_teacher(by[s.tensor]) for s in self.sites]

    def _pairs(self, module, xs, idx):
        """(output plan, student value, teacher value) per matched output; ``idx`` None: ``xs`` are not rows of
        the data (augmented copies), so the teacher runs on them."""
        import torch

        outs, extra = module.run(*xs, extra=self.extra)
        got = dict(zip(module.output_names, outs)) | extra
        if idx is None:
            ref = self._teacher_on({k: np.ascontiguousarray(x.detach().numpy()) for k, x in zip(module.input_names, xs)})
        else:
            ref = [c[idx] for c in self.cache] if self.cache is not None else self._teacher(idx)
        masks = dict(zip(module.input_names, xs))
        pairs = [(p, got[p.value], torch.from_numpy(np.ascontiguousarray(r)), masks.get(p.mask))
                 for p, r in zip(self.active, ref)]
        feats = [(s, got[s.tensor], torch.from_numpy(np.ascontiguousarray(r)), masks.get(s.mask))
                 for s, r in zip(self.sites, ref[len(self.active):])]
        return pairs, feats

    def _feature_loss(self, feats):
        """The mean over the sites of each one's scaled MSE, times the weight (0 without sites)."""
        total = 0.0
        for site, s, t, mask in feats:
            if s.shape != t.shape:
                raise BadArgument(f"--plan: the student's {site.tensor!r} is shaped {list(s.shape)}, the teacher's "
                                  f"kept channels {list(t.shape)}: give the plan the student was pruned with")
            if mask is not None and tuple(mask.shape) != tuple(s.shape[:2]):
                mask = None  # a batch whose positions this tensor does not follow: every position compared
            total = total + self._mse(s, t, mask) / site.scale
        return total * (self.feature_weight / len(feats)) if feats else total

    def _mse(self, s, t, mask=None):
        """The mean squared error, over the positions where ``mask`` (N, T) is non-zero when given."""
        import torch.nn.functional as F

        if mask is None:
            return F.mse_loss(s.float(), t.float())
        w = self._weights(mask, tuple(s.shape))
        sq = (s.float() - t.float()) ** 2 * w
        return sq.sum() / (w.sum() * (s[0, 0].numel())).clamp_min(1.0)

    def _loss(self, p: OutputLoss, s, t, mask=None):
        import torch
        import torch.nn.functional as F

        if p.kind == "mse":
            if s.shape != t.shape:
                raise BadArgument(f"--teacher output {p.name!r} is shaped {list(t.shape)}, the student's "
                                  f"{list(s.shape)}")
            if mask is not None and tuple(mask.shape) != tuple(s.shape[:2]):
                raise BadArgument(f"output {p.name!r} is shaped {list(s.shape)}, its padding mask {p.mask!r} "
                                  f"{list(mask.shape)}: give --output-loss {p.name}=off or a matching mask")
            return self._mse(s, t, mask) / p.scale
        s, t = s.float(), t.float()
        if s.shape != t.shape:
            raise BadArgument(f"--teacher value {p.value!r} is shaped {list(t.shape)}, the student's {list(s.shape)}")
        if p.kind == "bce":
            if p.value != p.name:  # logits: log p = logsigmoid(z), log(1 - p) = logsigmoid(-z)
                ls, ls1, lt, lt1 = F.logsigmoid(s), F.logsigmoid(-s), F.logsigmoid(t), F.logsigmoid(-t)
            else:
                s, t = s.clamp(1e-7, 1 - 1e-7), t.clamp(1e-7, 1 - 1e-7)
                ls, ls1, lt, lt1 = torch.log(s), torch.log1p(-s), torch.log(t), torch.log1p(-t)
            return (lt.exp() * (lt - ls) + lt1.exp() * (lt1 - ls1)).mean()
        if p.flatten_from is not None:
            s, t = s.reshape(*s.shape[: p.flatten_from], -1), t.reshape(*t.shape[: p.flatten_from], -1)
        if p.log:
            s, t = torch.log(s.clamp_min(1e-30)), torch.log(t.clamp_min(1e-30))
        ls, lt = F.log_softmax(s / self.T, p.axis), F.log_softmax(t / self.T, p.axis)
        kl = (lt.exp() * (lt - ls)).sum(p.axis).mean() * self.T**2
        return kl + self._ctc(p, s, t) if p.kind == "kl+ctc" else kl

    @staticmethod
    def _ctc(p: OutputLoss, s, t):
        """The CTC loss (per target character, averaged over the batch) of the student's per-step log-probabilities
        ``s`` (N, T, C: logits or log-probabilities) on the teacher's greedy transcription of ``t``."""
        import torch
        import torch.nn.functional as F

        if s.dim() != 3 or p.axis not in (-1, 2):
            raise BadArgument(f"--output-loss {p.name}=kl+ctc: expects per-step class scores (N, T, C), got a "
                              f"{s.dim()}-d value with the classes on axis {p.axis}")
        best = t.argmax(-1)  # (N, T)
        new = torch.ones_like(best, dtype=torch.bool)
        new[:, 1:] = best[:, 1:] != best[:, :-1]
        keep = new & (best != CTC_BLANK)
        targets = best[keep]  # concatenated transcriptions
        lengths = keep.sum(1)
        logp = F.log_softmax(s, -1).transpose(0, 1)  # (T, N, C)
        steps = torch.full((s.shape[0],), s.shape[1], dtype=torch.long)
        return F.ctc_loss(logp, targets, steps, lengths, blank=CTC_BLANK, reduction="mean", zero_infinity=True)

    def torch_loss(self, module, xs, idx):
        pairs, feats = self._pairs(module, xs, idx)
        return sum(self._loss(*pair) for pair in pairs) + self._feature_loss(feats)

    def torch_loss_on(self, module, xs):
        """The loss on inputs that are not rows of the data (augmented copies): the teacher runs on them."""
        return self.torch_loss(module, xs, None)

    def measure(self, module, feed, batches) -> tuple[float, None]:
        """The mean loss over the samples of ``batches`` (module in eval mode); the first call records each
        output's loss as 'before', later ones as 'after'."""
        import torch

        matched = self.active + ([self.features] if self.features is not None else [])
        sums = np.zeros(len(matched))
        count = 0
        with torch.no_grad():
            for idx in batches:
                pairs, feats = self._pairs(module, feed(idx), idx)
                losses = [self._loss(*pair) for pair in pairs] + ([self._feature_loss(feats)] if feats else [])
                sums += np.array([float(v) for v in losses]) * len(idx)
                count += len(idx)
        means = sums / max(count, 1)
        first = all(p.before is None for p in matched)
        for p, m in zip(matched, means):
            if first:
                p.before = float(m)
            else:
                p.after = float(m)
        return float(means.sum()), None

    def outputs_report(self) -> list[dict]:
        return [p.as_dict() for p in self.plan + ([self.features] if self.features is not None else [])]
