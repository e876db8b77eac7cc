"""Fine-tune a (pruned) ONNX model through the ONNX -> PyTorch round trip, and write it back as ONNX.

``finetune(model, data, output)``: the graph becomes a trainable ``spa.onnx_to_torch.OnnxModule``
(float initializers are parameters; BatchNormalization keeps its running statistics, only its scale and bias
train), is trained with Adam on the samples in ``data``, and its weights are written back into the input graph's
initializers (nodes, names, opset and metadata unchanged, so a later ``spa prune`` or ``--plan`` sees the same
tensors; torch's TorchScript re-export, same input and output names and batch axis, only where that copy does not
reproduce the trained module), checked (onnx.checker, onnxruntime output shapes equal the original's, onnxruntime
equal to the trained torch module at two batch sizes) and written atomically.  Losses before and after are measured
with onnxruntime on the two ONNX models, over all the samples.

The data file is an ``.npz`` holding one array per graph input (keyed by the input's name, or by ``input_key``
for a single-input model) and the targets (``target_key``; by default the first of ``target``, ``y``,
``labels``, ``label``).  Only the first graph output is trained: ``ce`` takes class indices (N,) or class
probabilities shaped like the output, ``mse`` an array shaped like the output.

With ``teacher`` (the original, unpruned model) the data needs no targets: every output of the teacher is
matched (``spa.distill``: softened KL for class scores, relative MSE for maps and embeddings).

BatchNormalization statistics are re-estimated on the data (before training, used and updated during it with
batch statistics, and once more for the final weights), since pruning changes what reaches each BatchNorm;
``freeze_bn`` keeps the original ones; ``bn_augmented`` (with ``augment``) takes the final ones on the training
batches as augmented, the inputs the weights were trained under, instead of the data as given.  Exports that fold
BatchNorm into the convolutions have none to re-estimate (the report's ``bn`` says "none").  Adam's learning rate
decays to 0 along a cosine over all the steps, after an optional linear warm-up (``warmup``; off by default: 10 %
tied on the validation sets of PP-OCRv4 rec and all-MiniLM-L6-v2 and on PP-OCRv4 det's selection pages,
benchmarks/distill_rec_heldout_features_choice.txt, distill_minilm_choice.txt, distill_det_heldout_choice.txt run
14).  ``average`` (off by default) averages the weights over the last share of the steps, the learning rate held
where the averaging begins (stochastic weight averaging, Izmailov et al. 2018), before the final BatchNorm
statistics.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from . import modelfile
from .augment import Augment, parse_augment
from .distill import FEATURE_WEIGHT
from .errors import BadArgument, VerificationFailed
from .io_safety import same_file
from .plan import Plan

__all__ = ["LOSSES", "TEMPERATURE", "FinetuneReport", "finetune", "load_data", "reestimate_bn", "select_inputs"]

LOSSES = ("ce", "mse")
TARGET_KEYS = ("target", "y", "labels", "label")
TEMPERATURE = 2.0  # distillation's KL temperature (benchmarks/distill_digits.txt: T 1-8 alike there)
# trained torch module vs the written ONNX in onnxruntime, relative above magnitude 1: the standard of prune's own
# self-check (spa.api.SELF_CHECK_TOL). 1e-4 failed a correct run: PP-OCRv4 rec distilled 1 epoch differed by 2.2e-4
# written back and 1.7e-4 re-exported (float32 noise of two runtimes on a sharp Softmax, benchmarks/finetune_graph.py);
# a wrong weight or op is orders of magnitude above either
_TOL = 1e-3


@dataclass
class FinetuneReport:
    path: Path
    samples: int
    epochs: int
    loss_name: str
    loss_before: float
    loss_after: float
    accuracy_before: float | None
    accuracy_after: float | None
    export_error: float  # max |onnxruntime - torch| / max(1, max|torch|) of the written model
    seconds: float
    # "re-estimated", "re-estimated-augmented", "frozen" or "none" (no BatchNormalization node: folded into the convs)
    bn: str = "none"
    bn_layers: int = 0
    outputs: list[dict] = field(default_factory=list)  # distillation: per output its loss kind, before, after
    augment: tuple[str, ...] = ()  # distillation: the augmentations applied to the training batches

    def as_dict(self) -> dict:
        return {"output": str(self.path), "samples": self.samples, "epochs": self.epochs, "loss": self.loss_name,
                "loss_before": self.loss_before, "loss_after": self.loss_after,
                "accuracy_before": self.accuracy_before, "accuracy_after": self.accuracy_after,
                "export_error": self.export_error, "seconds": round(self.seconds, 3), "bn": self.bn,
                "bn_layers": self.bn_layers, "outputs": self.outputs, "augment": list(self.augment)}


def _torch():
    try:
        import torch
    except ImportError:
        raise BadArgument("fine-tuning needs torch: pip install 'spa[torch]'") from None
    return torch


def load_data(data: str | os.PathLike | Mapping[str, np.ndarray], model: onnx.ModelProto,
              preprocess: Mapping[str, object] | None = None) -> dict[str, np.ndarray]:
    """The arrays of ``data``: a mapping, an ``.npz`` file, or a folder of images preprocessed for ``model`` with
    ``preprocess`` (spa.images.load_inputs: size, mean/std, scale, bgr, layout, gray; as for ``--calib``)."""
    if isinstance(data, Mapping):
        return {str(k): np.asarray(v) for k, v in data.items()}
    p = Path(data)
    if p.is_dir():
        from .images import load_inputs

        return load_inputs(p, model, flag="--data", **(preprocess or {}))
    if preprocess:
        raise BadArgument(f"--data {p}: preprocessing options ({', '.join(sorted(preprocess))}) apply to a folder "
                          "of images, not to an .npz")
    if not p.is_file():
        raise BadArgument(f"--data {p}: no such file")
    try:
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        raise BadArgument(f"--data {p} is not a readable .npz file ({type(e).__name__})") from None


def select_inputs(model: onnx.ModelProto, arrays: dict[str, np.ndarray], input_key: str | None) -> dict[str, np.ndarray]:
    """One array per graph input (by name, or ``input_key`` for a single-input model), checked against the
    model's element types and static dims (cast where that is safe); all with the same number of samples."""
    inits = {i.name for i in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in inits]
    if input_key is not None:
        if len(names) != 1:
            raise BadArgument(f"--input applies to single-input models; this one takes {names}")
        if input_key not in arrays:
            raise BadArgument(f"no array {input_key!r} in the data (keys: {', '.join(sorted(arrays))})")
        inputs = {names[0]: arrays[input_key]}
    else:
        missing = [n for n in names if n not in arrays]
        if missing:
            hint = " (or name the key with --input)" if len(names) == 1 else ""
            raise BadArgument(f"the data has no array for graph input(s) {missing}{hint}; keys: "
                              f"{', '.join(sorted(arrays))}")
        inputs = {n: arrays[n] for n in names}
    n = None
    elem = {i.name: i.type.tensor_type for i in model.graph.input}
    for name, x in inputs.items():
        if x.ndim == 0 or len(x) == 0:
            raise BadArgument(f"input {name!r} is empty or not an array of samples")
        if n is not None and len(x) != n:
            raise BadArgument(f"input {name!r} has {len(x)} samples, the other inputs {n}")
        n = len(x)
        want = onnx.helper.tensor_dtype_to_np_dtype(elem[name].elem_type)
        if x.dtype != want:
            if not (np.issubdtype(x.dtype, np.number) and np.can_cast(x.dtype, want, "same_kind")):
                raise BadArgument(f"input {name!r} is {x.dtype}, the model takes {np.dtype(want)}")
            inputs[name] = x.astype(want)
        dims = elem[name].shape.dim
        for k, (d, s) in enumerate(zip(dims, x.shape)):
            if k and d.HasField("dim_value") and d.dim_value > 0 and d.dim_value != s:
                raise BadArgument(f"input {name!r} has shape {list(x.shape)}; the model takes "
                                  f"{[dd.dim_value if dd.HasField('dim_value') else dd.dim_param for dd in dims]}")
        if len(dims) != x.ndim:
            raise BadArgument(f"input {name!r} has {x.ndim} axes; the model takes {len(dims)}")
    return inputs


def _split(model: onnx.ModelProto, arrays: dict[str, np.ndarray], input_key: str | None,
           target_key: str | None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    if target_key is None:
        target_key = next((k for k in TARGET_KEYS if k in arrays), None)
        if target_key is None:
            raise BadArgument(f"no targets in the data: give --target KEY, or distil from the original model with "
                              f"--teacher (keys: {', '.join(sorted(arrays))})")
    elif target_key not in arrays:
        raise BadArgument(f"no array {target_key!r} in the data (keys: {', '.join(sorted(arrays))})")
    y = arrays[target_key]
    n = len(y) if y.ndim else 0
    if n == 0:
        raise BadArgument(f"targets {target_key!r} are empty or not an array of samples")
    inputs = select_inputs(model, arrays, input_key)
    for name, x in inputs.items():
        if len(x) != n:
            raise BadArgument(f"input {name!r} has {len(x)} samples, targets {n}")
    return inputs, y


def _batch_dynamic(model: onnx.ModelProto) -> tuple[bool, int]:
    """Whether the first input's batch axis is symbolic, and its fixed size if not."""
    d = model.graph.input[0].type.tensor_type.shape.dim
    if not d or (d[0].HasField("dim_value") and d[0].dim_value > 0):
        return False, (d[0].dim_value if d else 0)
    return True, 0


class _Supervised:
    """Labelled loss on the first output (the targets are the data's)."""

    def __init__(self, kind: str, y: np.ndarray, out_shape: tuple[int, ...]) -> None:
        self.kind = kind
        if kind == "ce":
            if len(out_shape) < 2:
                raise BadArgument(f"--loss ce needs class scores (N, C, ...) as the first output; it is {list(out_shape)}")
            if np.issubdtype(y.dtype, np.integer):
                if y.shape != (out_shape[0], *out_shape[2:]):
                    raise BadArgument(f"class-index targets must be shaped {[out_shape[0], *out_shape[2:]]}, "
                                      f"got {list(y.shape)}")
                if y.min() < 0 or y.max() >= out_shape[1]:
                    raise BadArgument(f"class indices must lie in [0, {out_shape[1]}), got [{y.min()}, {y.max()}]")
                self.y = y.astype(np.int64)
            elif np.issubdtype(y.dtype, np.floating) and y.shape == out_shape:
                self.y = y.astype(np.float32)
            else:
                raise BadArgument(f"--loss ce targets must be class indices (integers) or probabilities shaped like "
                                  f"the output {list(out_shape)}; got {y.dtype} {list(y.shape)}")
        else:
            if y.shape != out_shape or not np.issubdtype(y.dtype, np.number):
                raise BadArgument(f"--loss mse targets must be numbers shaped like the output {list(out_shape)}, "
                                  f"got {y.dtype} {list(y.shape)}")
            self.y = y.astype(np.float32)

    def torch_loss(self, module, xs, idx):
        torch = _torch()
        out = module(*xs)
        out = out[0] if isinstance(out, tuple) else out
        y = torch.from_numpy(self.y[idx])
        f = torch.nn.functional
        return f.cross_entropy(out, y) if self.kind == "ce" else f.mse_loss(out, y)

    def measure(self, module, feed, batches) -> tuple[float, float | None]:
        """(mean loss, accuracy or None) of ``module`` (eval mode) over the samples of ``batches``."""
        torch = _torch()
        with torch.no_grad():
            outs = [module(*feed(idx)) for idx in batches]
        outs = [o[0] if isinstance(o, tuple) else o for o in outs]
        idx = np.concatenate(batches)
        full = np.empty((len(self.y), *outs[0].shape[1:]), np.float32)
        full[idx] = np.concatenate([o.numpy() for o in outs])
        return self.measure_outputs(full, idx)

    def measure_outputs(self, out: np.ndarray, idx: np.ndarray | None = None) -> tuple[float, float | None]:
        """(mean loss, accuracy or None) of the outputs of all samples, in float64."""
        y = self.y if idx is None else self.y[idx]
        o = (out if idx is None else out[idx]).astype(np.float64)
        if self.kind == "mse":
            return float(np.mean((o - y) ** 2)), None
        o = o - o.max(axis=1, keepdims=True)
        logp = o - np.log(np.exp(o).sum(axis=1, keepdims=True))
        if y.dtype == np.int64:
            nll = -np.take_along_axis(logp, y[:, None], axis=1)[:, 0]
            labels = y
        else:
            nll = -(y * logp).sum(axis=1)
            labels = y.argmax(axis=1)
        return float(nll.mean()), float((o.argmax(axis=1) == labels).mean())


def _run_all(sess, inputs: dict[str, np.ndarray], n: int, batch: int, fixed: int) -> np.ndarray:
    step = fixed or batch
    if fixed and n % fixed:
        raise BadArgument(f"the model's batch size is fixed at {fixed}; {n} samples do not divide into it")
    outs = [sess.run(None, {k: v[i : i + step] for k, v in inputs.items()})[0] for i in range(0, n, step)]
    return np.concatenate(outs)


def _bn_count(proto: onnx.ModelProto) -> int:
    return sum(n.op_type == "BatchNormalization" for n in proto.graph.node)


def reestimate_bn(module, batches) -> None:
    """Set every BatchNormalization's running mean and variance to their average over ``batches`` (tuples of
    input tensors): a training-mode forward per batch with momentum 1/(k+1) is the running average of the
    per-batch statistics.  Pruning changes what reaches each BatchNorm, so the original statistics are stale."""
    torch = _torch()
    was = module.training, module.bn_momentum
    module.train()
    with torch.no_grad():
        for k, xs in enumerate(batches):
            module.bn_momentum = 1.0 / (k + 1)
            module(*xs)
    module.train(was[0])
    module.bn_momentum = was[1]


def finetune(model: str | os.PathLike, data: str | os.PathLike | Mapping[str, np.ndarray], output: str | os.PathLike,
             *, epochs: int = 3, lr: float = 1e-3, batch: int = 32, loss: str | None = None,
             input_key: str | None = None, target_key: str | None = None, seed: int = 0,
             teacher: str | os.PathLike | onnx.ModelProto | None = None, temperature: float = TEMPERATURE,
             output_loss: Mapping[str, str] | None = None, freeze_bn: bool = False, bn_augmented: bool = False,
             progress: Callable[[int, int, float, float], None] | None = None,
             data_preprocess: Mapping[str, object] | None = None, augment: str | None = None,
             plan: str | os.PathLike | Plan | None = None, feature_weight: float = FEATURE_WEIGHT,
             warmup: float = 0.0, average: float = 0.0) -> FinetuneReport:
    """Train ``model`` (an ONNX file) on ``data`` and write the result to ``output``; see the module doc.

    With ``teacher`` (the original model) no targets are read: the loss matches every teacher output
    (``spa.distill``); ``augment`` ("all" or a comma list of ``spa.augment.KINDS``) then alters each training
    batch at random, the teacher seeing the same altered inputs; ``plan`` (the `spa.plan.Plan` the model was
    pruned with, or its JSON file; a list of them for a model pruned again after fine-tuning, composed by
    `spa.plan.Plan.then`) adds the intermediate features at the pruned groups' boundaries to the loss,
    weighted by ``feature_weight``.  ``warmup`` (a share of the steps, 0 <= warmup < 1) raises the learning
    rate linearly over those first w steps, from lr/w to lr, before the cosine (`lr_factor`).  ``average`` (a share
    of the steps, warmup + average <= 1) holds the learning rate where the last such share begins and averages the
    weights after each of its steps (stochastic weight averaging); the average is the result.  ``epochs=0`` only
    re-estimates the BatchNorm statistics.  ``progress(epoch, epochs, mean loss, seconds so far)`` is called after
    every epoch."""
    from .verify import check_model, session

    t0 = time.perf_counter()
    loss = _check_options(teacher, loss, target_key, output_loss, epochs, batch, lr, warmup, average)
    kinds = parse_augment(augment)
    if kinds and teacher is None:
        raise BadArgument("--augment applies to distillation (--teacher ORIGINAL.onnx): labelled targets would not "
                          "follow the altered inputs")
    if plan is not None and teacher is None:
        raise BadArgument("--plan applies to distillation (--teacher ORIGINAL.onnx): it names the teacher's channels "
                          "the student kept")
    if bn_augmented and (not kinds or freeze_bn):
        raise BadArgument("--bn-augmented re-estimates the BatchNorm statistics on the --augment'ed inputs: it needs "
                          "--augment and no --freeze-bn")
    plan = _one_plan(plan)
    src = Path(model)
    out_p = Path(output)
    if same_file(out_p, src):
        raise BadArgument(f"output path {out_p} is the input; refusing to overwrite the input")
    proto = modelfile.load(src)
    arrays = load_data(data, proto, data_preprocess)
    dynamic, fixed = _batch_dynamic(proto)

    torch = _torch()
    from .onnx_to_torch import onnx_to_torch

    aug = Augment(kinds, proto, seed) if kinds else None  # refuses non-image inputs before any work
    module = onnx_to_torch(proto)  # UnsupportedOp names the ops the round trip lacks
    step = fixed or batch
    inputs, n, obj = _objective(proto, arrays, teacher, loss, input_key, target_key, fixed, step, batch,
                                temperature, output_loss, plan, feature_weight)
    xs = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in inputs.items()}
    all_batches = [np.arange(i, min(i + step, n)) for i in range(0, n - (n % step if fixed else 0), step)]

    def feed(idx):
        return [xs[k][idx] for k in module.input_names]

    module.eval()
    loss_before, acc_before = obj.measure(module, feed, all_batches)
    bn = ("none" if not _bn_count(proto) else "frozen" if freeze_bn
          else "re-estimated-augmented" if bn_augmented else "re-estimated")
    if bn.startswith("re-estimated"):  # on the data as given: the loss before training is measured on it
        reestimate_bn(module, (feed(idx) for idx in all_batches))
    _train(torch, module, obj, feed, all_batches, n, step, fixed, epochs, lr, seed, bn, progress, t0, aug, warmup,
           average)
    module.eval()

    tuned, err = _written(torch, module, proto, inputs, dynamic, fixed)
    check_model(tuned, proto)
    modelfile.save_atomic(tuned, out_p, input_path=str(src))
    if teacher is None:  # measured on the written model in onnxruntime
        loss_after, acc_after = obj.measure_outputs(_run_all(session(tuned), inputs, n, batch, fixed))
    else:
        loss_after, acc_after = obj.measure(module, feed, all_batches)
    return FinetuneReport(out_p, n, epochs, loss if teacher is None else "distill", loss_before, loss_after,
                          acc_before, acc_after, err, time.perf_counter() - t0, bn, _bn_count(proto),
                          obj.outputs_report() if teacher is not None else [], kinds)


def _one_plan(plan) -> Plan | None:
    """`plan` as one Plan of the teacher: a Plan or a file, or a list of them in the order they were applied (a model
    pruned, fine-tuned and pruned again), composed by `Plan.then`."""
    if plan is None:
        return None
    plans = [p if isinstance(p, Plan) else Plan.load(p) for p in (plan if isinstance(plan, (list, tuple)) else [plan])]
    out = plans[0]
    for p in plans[1:]:
        out = out.then(p)
    return out


def _check_options(teacher, loss: str | None, target_key: str | None, output_loss, epochs: int, batch: int,
                   lr: float, warmup: float = 0.0, average: float = 0.0) -> str:
    """Refuse options that contradict each other (BadArgument); returns the labelled loss to use."""
    if teacher is not None and (loss is not None or target_key is not None):
        raise BadArgument("--loss and --target apply to labelled fine-tuning; with --teacher the loss is chosen "
                          "per output (--output-loss NAME=kl|mse)")
    if teacher is None and output_loss:
        raise BadArgument("--output-loss applies to distillation: give --teacher ORIGINAL.onnx")
    loss = loss or "ce"
    if loss not in LOSSES:
        raise BadArgument(f"unknown loss {loss!r}; use one of {', '.join(LOSSES)}")
    if epochs < 0 or batch < 1 or not lr > 0:
        raise BadArgument(f"--epochs must be >= 0, --batch >= 1 and --lr > 0 (got {epochs}, {batch}, {lr})")
    if not 0.0 <= warmup < 1.0:
        raise BadArgument(f"--warmup is a fraction of the training steps, 0 <= warmup < 1 (got {warmup})")
    if not 0.0 <= average < 1.0 or warmup + average > 1.0:
        raise BadArgument(f"--average is a fraction of the training steps, 0 <= average < 1 and with --warmup at most "
                          f"1 in all (got {average}, warm-up {warmup})")
    return loss


def _objective(proto: onnx.ModelProto, arrays: dict[str, np.ndarray], teacher, loss: str, input_key, target_key,
               fixed: int, step: int, batch: int, temperature: float, output_loss, plan: Plan | None = None,
               feature_weight: float = FEATURE_WEIGHT):
    """The training inputs, their count and what is minimised: the teacher's outputs (distillation) or the
    targets in the data (labelled)."""
    from .verify import session

    if teacher is None:
        inputs, y = _split(proto, arrays, input_key, target_key)
        return inputs, len(y), _Supervised(loss, y, _run_all(session(proto), inputs, len(y), batch, fixed).shape)
    from .distill import Distillation

    t_proto = teacher if isinstance(teacher, onnx.ModelProto) else modelfile.load(teacher)
    inputs = select_inputs(proto, arrays, input_key)
    n = len(next(iter(inputs.values())))
    if fixed and n < fixed:
        raise BadArgument(f"the model's batch size is fixed at {fixed}; the data has only {n} samples")
    if fixed and n % fixed:  # a fixed batch: the samples that fill whole batches
        n -= n % fixed
        inputs = {k: v[:n] for k, v in inputs.items()}
    return inputs, n, Distillation(proto, t_proto, inputs, step, temperature, output_loss or {}, plan,
                                   feature_weight)


def lr_factor(k: int, steps: int, warmup: float = 0.0, average: float = 0.0) -> float:
    """The learning rate of step k (0-based) of `steps`, as a share of --lr: a linear rise over the first
    round(warmup * steps) steps (from 1/w of it at the first), then a cosine decay to 0 over all the steps, held
    from the first of the last round(average * steps) steps on (`averaged_from`)."""
    k = min(k, averaged_from(steps, average))
    w = round(warmup * steps)
    ramp = min(1.0, (k + 1) / w) if w else 1.0
    return ramp * 0.5 * (1 + math.cos(math.pi * min(k, steps) / steps))


def averaged_from(steps: int, average: float) -> int:
    """The first (0-based) of the steps whose resulting weights are averaged: the last round(average * steps)."""
    return steps - round(average * steps)


def _train(torch, module, obj, feed, all_batches: list[np.ndarray], n: int, step: int, fixed: int, epochs: int,
           lr: float, seed: int, bn: str, progress, t0: float, aug: Augment | None = None,
           warmup: float = 0.0, average: float = 0.0) -> None:
    """Adam with a cosine decay to 0 over `epochs` passes in a seeded order (each batch altered by ``aug``
    when given), after a linear warm-up over the first ``warmup`` share of the steps; with ``average`` the
    weights after each of the last such share of the steps are averaged (`lr_factor` holds the learning rate
    there) and the average replaces them; BatchNorm statistics re-estimated on the final weights (bn
    "re-estimated")."""
    g = torch.Generator().manual_seed(seed)
    # single-element float initializers are constants (exponents, epsilons, clip bounds, scales), not weights:
    # training a Pow's exponent p makes its gradient x^p ln(x) NaN (PP-OCRv4 rec diverged at the first step)
    for p in module.parameters():
        if p.numel() <= 1:
            p.requires_grad_(False)
    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    steps = max(1, epochs * len(all_batches))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: lr_factor(k, steps, warmup, average))
    first_avg = averaged_from(steps, average) if epochs else steps  # no step taken: nothing to average
    mean = [torch.zeros_like(p) for p in params] if first_avg < steps else []
    k = 0  # steps taken
    module.train(bn.startswith("re-estimated"))  # frozen statistics: BatchNorm normalises with its running ones
    for epoch in range(epochs):
        perm = torch.randperm(n, generator=g).numpy()
        total = 0.0
        for i in range(0, n - (n % step if fixed else 0), step):
            idx = perm[i : i + step]
            opt.zero_grad()
            value = obj.torch_loss(module, feed(idx), idx) if aug is None else obj.torch_loss_on(module, aug(feed(idx)))
            if not torch.isfinite(value):
                raise VerificationFailed(f"the loss became {value.item()} during training; try a smaller --lr")
            value.backward()
            opt.step()
            sched.step()
            if k >= first_avg:
                with torch.no_grad():
                    for m, p in zip(mean, params):
                        m.add_(p - m, alpha=1.0 / (k - first_avg + 1))  # running mean of the averaged steps
            k += 1
            total += value.item() * len(idx)
        if progress is not None:
            progress(epoch + 1, epochs, total / (len(all_batches[0]) * len(all_batches) if fixed else n),
                     time.perf_counter() - t0)
    if mean:
        with torch.no_grad():
            for m, p in zip(mean, params):
                p.copy_(m)
    if bn.startswith("re-estimated") and epochs:  # statistics of the final weights, on the inputs as trained on
        alter = aug if bn == "re-estimated-augmented" else (lambda xs: xs)  # finetune() refuses it without aug
        reestimate_bn(module, (alter(feed(idx)) for idx in all_batches))


def _written(torch, module, proto: onnx.ModelProto, inputs: dict[str, np.ndarray], dynamic: bool,
             fixed: int) -> tuple[onnx.ModelProto, float]:
    """The model to write and its check (`_check_export`): the input graph with the trained weights written into
    its initializers (`write_back`), so that nodes, names, opset and metadata stay the user's and a later `spa
    prune` or `--plan` sees the same tensors; the TorchScript re-export only where that copy does not reproduce
    the trained module (an initializer dtype the module computes in at another precision)."""
    tuned = write_back(module, proto)
    try:
        return tuned, _check_export(torch, module, tuned, inputs, dynamic, fixed)
    except VerificationFailed:
        tuned = _export(torch, module, proto, inputs, dynamic, fixed)
        return tuned, _check_export(torch, module, tuned, inputs, dynamic, fixed)


def write_back(module, proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``proto`` whose initializers hold ``module``'s values (its parameters and buffers, in each
    initializer's own dtype and shape): the graph itself is untouched."""
    from onnx import helper, numpy_helper

    values = dict(module.named_parameters()) | dict(module.named_buffers())
    tuned = onnx.ModelProto()
    tuned.CopyFrom(proto)
    for init in tuned.graph.initializer:
        attr = module.param_names.get(init.name)
        if attr is None:
            continue
        arr = values[attr].detach().cpu().numpy()
        arr = arr.astype(helper.tensor_dtype_to_np_dtype(init.data_type)).reshape(tuple(init.dims))
        init.CopyFrom(numpy_helper.from_array(arr, init.name))
    return tuned


def _export(torch, module, proto: onnx.ModelProto, inputs: dict[str, np.ndarray], dynamic: bool,
            fixed: int) -> onnx.ModelProto:
    import io
    import warnings

    from .errors import first_line

    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 17)
    opset = min(max(opset, 7), 20)  # the TorchScript exporter's range
    b = fixed or 2
    example = tuple(torch.from_numpy(np.ascontiguousarray(inputs[k][:b])) for k in module.input_names)
    axes = None
    if dynamic:
        def sym(v) -> bool:
            d = v.type.tensor_type.shape.dim
            return bool(d) and not (d[0].HasField("dim_value") and d[0].dim_value > 0)

        axes = {v.name: {0: "batch"} for v in (*proto.graph.input, *proto.graph.output) if sym(v)}
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, example, buf, dynamo=False, opset_version=opset, do_constant_folding=True,
                              input_names=list(module.input_names), output_names=list(module.output_names),
                              dynamic_axes=axes)
    except Exception as e:  # noqa: BLE001
        raise VerificationFailed(f"re-exporting the trained model failed: {first_line(e)}") from None
    tuned = onnx.load_from_string(buf.getvalue())
    tuned.graph.name = proto.graph.name or tuned.graph.name
    return tuned


def _check_export(torch, module, tuned: onnx.ModelProto, inputs: dict[str, np.ndarray], dynamic: bool,
                  fixed: int) -> float:
    """onnxruntime on the re-exported model equals the trained module (two batch sizes when the batch is free)."""
    from .verify import session

    sess = session(tuned)
    n = len(next(iter(inputs.values())))
    sizes = [fixed] if fixed else sorted({min(n, 2), min(n, 3)})
    worst = 0.0
    for b in sizes:
        feeds = {k: np.ascontiguousarray(v[:b]) for k, v in inputs.items()}
        got = sess.run(None, feeds)
        with torch.no_grad():
            ref = module(*[torch.from_numpy(feeds[k]) for k in module.input_names])
        ref = ref if isinstance(ref, tuple) else (ref,)
        for name, gv, rv in zip(module.output_names, got, ref):
            rv = rv.numpy()
            if gv.shape != rv.shape:
                raise VerificationFailed(f"re-exported output {name!r} has shape {list(gv.shape)}, torch "
                                         f"{list(rv.shape)}")
            if rv.size and np.issubdtype(rv.dtype, np.floating):
                e = float(np.max(np.abs(gv.astype(np.float64) - rv)) / max(1.0, float(np.max(np.abs(rv)))))
                worst = max(worst, e)
    if not worst <= _TOL:
        raise VerificationFailed(f"the re-exported model differs from the trained torch module by {worst:.1e}")
    return worst
