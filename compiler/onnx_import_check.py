"""Loading an ONNX file and checking its structure before any translation work.

Everything here turns malformed input into UsageError / ModelError with a message that names
the file, node or tensor: missing files, non-ONNX bytes, bad opsets, dangling inputs, cycles,
duplicate names, initializers whose data does not match their dims, absurd dims and element
types edgecc does not support.
"""
from __future__ import annotations

import heapq
import math
import os
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.external_data_helper import load_external_data_for_model, uses_external_data

from .dtypes import onnx_to_dtype
from .errors import ModelError, UsageError

MIN_OPSET, MAX_OPSET = 7, 22
MAX_ELEMENTS = 2 ** 31          # larger tensors are rejected as absurd
DEFAULT_DOMAINS = ("", "ai.onnx")


def load_model(model_or_path) -> tuple[onnx.ModelProto, str]:
    """(model, label) where label names the model in messages (its file name)."""
    if isinstance(model_or_path, onnx.ModelProto):
        return model_or_path, (model_or_path.graph.name or "model") + ".onnx"
    path = Path(os.fspath(model_or_path))
    if not path.exists():
        raise UsageError(f"{path}: no such file")
    if path.is_dir():
        raise UsageError(f"{path}: is a directory, expected an .onnx file")
    label = path.name
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf DecodeError, ...
        raise ModelError(f"{label}: not a valid ONNX model ({type(e).__name__}: "
                         f"{str(e).strip()[:200] or 'cannot parse'})") from None
    if any(uses_external_data(t) for t in model.graph.initializer):
        try:
            load_external_data_for_model(model, str(path.parent))
        except Exception as e:
            raise ModelError(f"{label}: cannot read its external weight data ({type(e).__name__}"
                             f": {str(e)[:200]}); keep the data files beside the model") from None
    if not model.HasField("graph") or (not model.graph.node and not model.graph.output):
        raise ModelError(f"{label}: not a valid ONNX model (no graph)")
    return model, label


def default_opset(model: onnx.ModelProto, label: str) -> int:
    versions = [o.version for o in model.opset_import if o.domain in DEFAULT_DOMAINS]
    if not versions:
        raise ModelError(f"{label}: model declares no default-domain opset; edgecc supports "
                         f"opsets {MIN_OPSET}-{MAX_OPSET}")
    v = versions[0]
    if not MIN_OPSET <= v <= MAX_OPSET:
        raise ModelError(f"{label}: opset {v} is not supported; edgecc supports opsets "
                         f"{MIN_OPSET}-{MAX_OPSET} (convert with onnx.version_converter)")
    return v


def dtype_name(enum: int) -> str:
    try:
        return TensorProto.DataType.Name(enum)
    except ValueError:
        return f"type #{enum}"


def tensor_to_array(t: TensorProto, where: str) -> np.ndarray:
    """Decode an initializer / Constant tensor, checking dims, element type and data size."""
    dims = [int(d) for d in t.dims]
    what = f"{where}: tensor '{t.name}'" if t.name else f"{where}: tensor"
    if any(d < 0 for d in dims):
        raise ModelError(f"{what} has negative dims {dims}")
    n = math.prod(dims)
    if n > MAX_ELEMENTS:
        raise ModelError(f"{what} has dims {dims} ({n} elements, more than 2^31)")
    dtype = onnx_to_dtype(t.data_type)
    if dtype is None:
        raise ModelError(f"{what} has element type {dtype_name(t.data_type)}, which edgecc "
                         f"does not support")
    if t.data_location == TensorProto.EXTERNAL:
        raise ModelError(f"{what} keeps its data in an external file that was not loaded; "
                         f"keep the data file beside the model")
    if t.HasField("raw_data"):
        raw = t.raw_data            # each access copies the bytes: read it once
        np_dtype = helper.tensor_dtype_to_np_dtype(t.data_type).newbyteorder("<")
        if len(raw) != n * np_dtype.itemsize:
            raise ModelError(f"{what} has {len(raw)} bytes of data but dims {dims} "
                             f"need {n * np_dtype.itemsize}")
        # one copy: a writable, native-order array that no longer references the proto
        data = np.frombuffer(raw, dtype=np_dtype).reshape(dims)
        return data.astype(np_dtype.newbyteorder("="))
    field = helper.tensor_dtype_to_field(t.data_type)
    have = len(getattr(t, field))
    if have != n:
        raise ModelError(f"{what} has {have} values but dims {dims} need {n}")
    try:
        return np.array(numpy_helper.to_array(t))
    except Exception as e:
        raise ModelError(f"{what} cannot be decoded: {e}") from None


def node_label(node: onnx.NodeProto, index: int) -> str:
    return node.name or f"{node.op_type}_{index}"


def check_structure(graph: onnx.GraphProto, label: str) -> list[int]:
    """Check names and dataflow; return a topological order of graph.node (indices)."""
    defined: dict[str, str] = {}

    def define(name: str, by: str):
        if not name:
            return
        if name in defined:
            raise ModelError(f"{label}: value '{name}' is defined twice ({defined[name]} and "
                             f"{by}); ONNX names must be unique")
        defined[name] = by

    inits = {t.name for t in graph.initializer}
    for t in graph.initializer:
        define(t.name, f"initializer '{t.name}'")
    for i in graph.input:
        if i.name not in inits:       # IR<4 models list initializers as inputs too
            define(i.name, f"graph input '{i.name}'")
    producer: dict[str, int] = {}
    for k, node in enumerate(graph.node):
        for o in node.output:
            define(o, f"node '{node_label(node, k)}'")
            if o:
                producer[o] = k
    for k, node in enumerate(graph.node):
        for i in node.input:
            if i and i not in defined:
                raise ModelError(f"{label}: node '{node_label(node, k)}' ({node.op_type}) reads "
                                 f"'{i}', which no node, initializer or graph input defines")
    for o in graph.output:
        if o.name not in defined:
            raise ModelError(f"{label}: graph output '{o.name}' is never produced")
    # Kahn's algorithm keeps the file order where it is already topological.
    pending = [sum(1 for i in set(n.input) if i in producer) for n in graph.node]
    readers: dict[int, list[int]] = {}
    for k, node in enumerate(graph.node):
        for i in set(node.input):
            if i in producer:
                readers.setdefault(producer[i], []).append(k)
    ready = [k for k, c in enumerate(pending) if c == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        k = heapq.heappop(ready)
        order.append(k)
        for r in readers.get(k, ()):
            pending[r] -= 1
            if pending[r] == 0:
                heapq.heappush(ready, r)
    if len(order) != len(graph.node):
        stuck = next(k for k, c in enumerate(pending) if c > 0)
        raise ModelError(f"{label}: the graph has a cycle through node "
                         f"'{node_label(graph.node[stuck], stuck)}' ({graph.node[stuck].op_type})")
    return order
