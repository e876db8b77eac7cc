"""PyTorch -> ONNX with the legacy TorchScript exporter (default) or the torch.export based one.

:func:`torch_to_onnx` writes a single self-contained ONNX file atomically and checks with
onnxruntime that its outputs match PyTorch's (within 1e-4). The exporter quirks live here too, public, so the
test zoo (``models.zoo_torch``, ``models.zoo_transformers``) exports the same way: :func:`quiet` silences the
exporters, :data:`DYNAMO_MIN_OPSET` is the dynamo exporter's lowest opset and :func:`downconvert` brings its
model down to an older opset.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import pathlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from spa.errors import BadArgument

from ._common import (
    ConversionFailed,
    OutputMismatch,
    call_factory,
    compare,
    discard,
    first_line,
    ort_run,
    ort_session,
    publish,
    tmp_path_for,
)

__all__ = ["DYNAMO_MIN_OPSET", "EXPORTERS", "downconvert", "quiet", "torch_to_onnx"]

log = logging.getLogger("spa.converters")
EXPORTERS = ("auto", "legacy", "dynamo")
DYNAMO_MIN_OPSET = 18  # the torch.export-based exporter's lowest native opset


@contextlib.contextmanager
def quiet():
    """Silence exporter warnings, log records and progress prints (the exporters talk a lot; a failure still
    raises, and that is what the caller reports)."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript", "onnx_ir", "torch._dynamo")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR + 10)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with contextlib.redirect_stdout(io.StringIO()):
                yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


@dataclass
class TorchExportInfo:
    path: pathlib.Path
    exporter: str
    opset: int
    max_error: float
    warnings: list[str] = field(default_factory=list)


def _as_tuple(example_inputs) -> tuple:
    import torch

    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,)
    if isinstance(example_inputs, (list, tuple)) and all(isinstance(t, torch.Tensor) for t in example_inputs):
        if not example_inputs:
            raise BadArgument("example_inputs is empty")
        return tuple(example_inputs)
    raise BadArgument("example_inputs must be a tensor or a sequence of tensors")


def _flatten(out) -> list:
    import torch

    if isinstance(out, torch.Tensor):
        return [out]
    from torch.utils._pytree import tree_flatten

    leaves = tree_flatten(out)[0]
    if not leaves or not all(isinstance(t, torch.Tensor) for t in leaves):
        raise ConversionFailed("the module's output is not a tensor or a (nested) sequence of tensors")
    return leaves


def _names(given: Sequence[str] | None, n: int, stem: str, what: str) -> list[str]:
    if given is not None:
        given = list(given)
        if len(given) != n:
            raise BadArgument(f"{len(given)} {what} names given for {n} {what}s")
        return given
    return [stem] if n == 1 else [f"{stem}_{i}" for i in range(n)]


def _batch2(args: tuple) -> tuple:
    """Example inputs with batch 2 (so neither exporter nor check specialises the batch to 1)."""
    import torch

    return tuple(torch.cat([a, a], 0) if a.dim() and a.shape[0] == 1 else a for a in args)


def _legacy(module, args, tmp, opset, in_names, out_names, dynamic_batch) -> None:
    import torch

    axes = {n: {0: "N"} for n in in_names + out_names} if dynamic_batch else None
    with quiet(), torch.no_grad():
        torch.onnx.export(module, args, str(tmp), dynamo=False, input_names=in_names, output_names=out_names,
                          dynamic_axes=axes, opset_version=opset, do_constant_folding=True)


def _dynamo(module, args, tmp, opset, in_names, out_names, dynamic_batch) -> list[str]:
    import onnx
    import torch

    notes: list[str] = []
    if isinstance(module, torch.jit.ScriptModule):
        raise ConversionFailed("the dynamo exporter cannot export a TorchScript module; use --exporter legacy")
    shapes = None
    if dynamic_batch:
        args = _batch2(args)
        n = torch.export.Dim("N", min=1, max=1024)
        shapes = tuple({0: n} if a.dim() else None for a in args)
    with quiet(), torch.no_grad():
        prog = torch.onnx.export(module, args, None, dynamo=True, input_names=in_names, output_names=out_names,
                                 dynamic_shapes=shapes, opset_version=max(opset, DYNAMO_MIN_OPSET),
                                 external_data=False, optimize=True, verbose=False)
    proto = prog.model_proto
    if opset < DYNAMO_MIN_OPSET:
        try:
            proto = downconvert(proto, opset)
        except Exception as e:  # noqa: BLE001 - depends on the ops used
            notes.append(f"could not convert the dynamo export to opset {opset} ({first_line(e)}); "
                         f"kept opset {DYNAMO_MIN_OPSET}")
    onnx.save_model(proto, str(tmp))
    return notes


def _verify(tmp, args, outs_ref, in_names, module, dynamic_batch) -> float:
    import torch

    sess = ort_session(tmp)
    err = compare(ort_run(sess, [a.detach().cpu().numpy() for a in args], in_names),
                  [o.detach().cpu().numpy() for o in outs_ref], "torch vs onnxruntime")
    if dynamic_batch and any(a.dim() and a.shape[0] == 1 for a in args):
        args2 = _batch2(args)
        with torch.no_grad():
            ref2 = _flatten(module(*args2))
        err = max(err, compare(ort_run(sess, [a.numpy() for a in args2], in_names),
                               [o.numpy() for o in ref2], "torch vs onnxruntime at batch 2"))
    return err


def export_torch(module, example_inputs, path, *, exporter: str = "auto", opset: int = 17,
                 input_names: Sequence[str] | None = None, output_names: Sequence[str] | None = None,
                 dynamic_batch: bool = True) -> TorchExportInfo:
    """:func:`torch_to_onnx` returning the details (exporter used, max error, warnings)."""
    import torch

    if exporter not in EXPORTERS:
        raise BadArgument(f"exporter must be one of {', '.join(EXPORTERS)}; got {exporter!r}")
    if not isinstance(module, torch.nn.Module):
        raise BadArgument(f"expected a torch.nn.Module, got {type(module).__name__}")
    if not 7 <= int(opset) <= 23:
        raise BadArgument(f"opset must be between 7 and 23, got {opset}")
    args = tuple(a.detach().cpu() for a in _as_tuple(example_inputs))
    module = module.eval()
    try:
        with torch.no_grad():
            outs_ref = _flatten(module(*args))
    except ConversionFailed:
        raise
    except Exception as e:  # noqa: BLE001
        raise ConversionFailed(f"the module fails on inputs of shape "
                               f"{', '.join(str(list(a.shape)) for a in args)}: {first_line(e)}") from None
    in_names = _names(input_names, len(args), "input", "input")
    out_names = _names(output_names, len(outs_ref), "output", "output")

    order = ["legacy", "dynamo"] if exporter == "auto" else [exporter]
    failures: list[str] = []
    notes: list[str] = []
    for which in order:
        tmp = tmp_path_for(path)
        try:
            try:
                if which == "legacy":
                    _legacy(module, args, tmp, opset, in_names, out_names, dynamic_batch)
                else:
                    notes += _dynamo(module, args, tmp, opset, in_names, out_names, dynamic_batch)
            except (ConversionFailed, BadArgument):
                raise
            except Exception as e:  # noqa: BLE001
                raise ConversionFailed(f"{which} exporter failed: {first_line(e)}") from None
            err = _verify(tmp, args, outs_ref, in_names, module, dynamic_batch)
        except (ConversionFailed, OutputMismatch) as e:
            discard(tmp)
            failures.append(f"{which}: {e}")
            if which == "legacy" and exporter == "auto":
                msg = f"legacy TorchScript exporter failed ({e}); falling back to the dynamo exporter"
                log.warning(msg)
                notes.append(msg)
                continue
            if len(failures) > 1:
                raise type(e)("torch export failed with both exporters: " + "; ".join(failures)) from None
            raise
        except BaseException:
            discard(tmp)
            raise
        out = publish(tmp, path)
        import onnx

        used_opset = next((o.version for o in onnx.load(str(out), load_external_data=False).opset_import
                           if o.domain in ("", "ai.onnx")), opset)
        return TorchExportInfo(out, which, used_opset, err, notes)
    raise AssertionError("unreachable")  # pragma: no cover


def torch_to_onnx(module, example_inputs, path: str | os.PathLike, *, exporter: str = "auto", opset: int = 17,
                  input_names: Sequence[str] | None = None, output_names: Sequence[str] | None = None,
                  dynamic_batch: bool = True) -> pathlib.Path:
    """Export ``module`` (an ``nn.Module`` or TorchScript module) to a self-contained ONNX file.

    ``example_inputs`` is a tensor or a tuple of tensors. ``exporter="auto"`` tries the legacy
    TorchScript exporter first and falls back to the ``torch.export`` based one (logging a
    warning on logger ``spa.converters``) if it fails or its model disagrees with PyTorch.
    Inputs are named ``input`` (``input_0``... for several), outputs ``output``; with
    ``dynamic_batch`` axis 0 of every input and output is symbolic. The file is written
    atomically, after onnxruntime reproduced PyTorch's outputs within 1e-4 (also at batch 2 when
    the batch is dynamic). Raises :class:`~converters._common.ConversionFailed` (exit code 3) or
    :class:`~converters._common.OutputMismatch` (exit code 4), both ``spa.errors.SpaError``.
    """
    return export_torch(module, example_inputs, path, exporter=exporter, opset=opset, input_names=input_names,
                        output_names=output_names, dynamic_batch=dynamic_batch).path


def load_torch_source(source: str) -> Any:
    """A TorchScript file, or ``file.py:factory`` (a zero-argument callable returning an nn.Module)."""
    import torch

    py, sep, factory = source.rpartition(":")
    if sep and py.endswith(".py") and factory:
        return _load_factory(pathlib.Path(py), factory)
    p = pathlib.Path(source)
    if not p.exists():
        raise BadArgument(f"{p} does not exist")
    if p.is_dir():
        raise BadArgument(f"{p} is a directory, not a TorchScript file")
    try:
        return torch.jit.load(str(p), map_location="cpu")
    except Exception as e:  # noqa: BLE001
        raise ConversionFailed(f"cannot load {p} as TorchScript: {first_line(e)}") from None


def _load_factory(py: pathlib.Path, factory: str):
    import torch

    m = call_factory(py, factory, "torch")
    if not isinstance(m, torch.nn.Module):
        raise ConversionFailed(f"{py.name}:{factory}() returned {type(m).__name__}, not a torch.nn.Module")
    return m


def _park_split18(proto, tmp_domain: str):
    """Rewrite opset-18 ``Split(num_outputs=n)`` into the opset-13 form.

    onnx's version converter has no 18->17 adapter for Split.  A Split with an
    explicit ``split`` input means the same in opsets 13..18, so each
    ``num_outputs`` Split gets a constant ``split`` input (from the inferred
    static shape) and is moved to a temporary domain so the converter leaves it
    alone; the caller moves it back afterwards.  Returns ``proto`` unchanged
    when there is no Split.
    """
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    if not any(n.op_type == "Split" and n.domain in ("", "ai.onnx") for n in proto.graph.node):
        return proto
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        dims = vi.type.tensor_type.shape.dim
        shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)
    for i, node in enumerate(model.graph.node):
        if node.op_type != "Split" or node.domain not in ("", "ai.onnx"):
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if "num_outputs" in attrs:
            shape = shapes.get(node.input[0])
            axis = attrs.get("axis", 0)
            if shape is None or shape[axis] is None:
                raise RuntimeError(f"Split {node.name!r}: split axis is not static")
            d, n = shape[axis], attrs["num_outputs"]
            chunk = -(-d // n)
            sizes = [chunk] * (n - 1) + [d - chunk * (n - 1)]
            name = f"{node.name or 'split'}_{i}_sizes"
            model.graph.initializer.append(numpy_helper.from_array(np.asarray(sizes, dtype=np.int64), name))
            keep = [a for a in node.attribute if a.name != "num_outputs"]
            del node.attribute[:]
            node.attribute.extend(keep)
            del node.input[1:]
            node.input.append(name)
        node.domain = tmp_domain
    model.opset_import.append(helper.make_opsetid(tmp_domain, 1))
    return model


# Reduce ops whose ``axes`` moved from attribute to input in opset 18 (ReduceSum did so in 13).
_REDUCE_AXES_18 = {
    "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
    "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare",
}


def downconvert(proto, opset: int):
    """onnx.version_converter plus a fix-up for a converter bug.

    The converter moves Reduce* ``axes`` back to an attribute but leaves the
    opset-18-only ``noop_with_empty_axes`` attribute behind, which makes the
    model invalid.  With axes present (always the case here) the attribute has
    no effect, so it is dropped.  The result is validated with the checker.
    """
    import onnx
    import onnx.version_converter

    tmp_domain = "spa.converters.tmp"
    parked = _park_split18(proto, tmp_domain) if opset < 18 else proto
    out = onnx.version_converter.convert_version(parked, opset)
    if parked is not proto:
        for node in out.graph.node:
            if node.domain == tmp_domain:
                node.domain = ""
        keep = [o for o in out.opset_import if o.domain != tmp_domain]
        del out.opset_import[:]
        out.opset_import.extend(keep)
    if opset < 18:
        graphs = [out.graph] + [f for f in out.functions]
        for g in graphs:
            for node in g.node:
                if node.op_type in _REDUCE_AXES_18 and node.domain in ("", "ai.onnx"):
                    keep = [a for a in node.attribute if a.name != "noop_with_empty_axes"]
                    if len(keep) != len(node.attribute):
                        if not any(a.name == "axes" for a in keep):
                            raise RuntimeError(f"{node.op_type} {node.name!r} without constant axes")
                        del node.attribute[:]
                        node.attribute.extend(keep)
    onnx.checker.check_model(out, full_check=True)
    return out

