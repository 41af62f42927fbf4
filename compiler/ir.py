"""The edgecc IR: tensor types, values, ops and graphs.

A Graph is a list of Ops kept in topological order. Every tensor is a Value with a static
TensorType. Weights are Values whose `data` holds a numpy array (graph.params); they are printed
by name in the text IR and saved beside it. Ops are in *canonical form*: every shape-like operand
(Reshape's shape, Slice's starts, Clip's min/max, ...) is a resolved attribute, so passes and
backends never see computed shapes. The canonical op set is documented in compiler/ops/README.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from .dtypes import dtype_to_numpy, numpy_to_dtype


def unique_name(base: str, taken: set[str]) -> str:
    """`base`, else the first free `base_1`, `base_2`, ...; the name returned joins `taken`."""
    name, k = base, 1
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    taken.add(name)
    return name


@dataclass(frozen=True)
class QuantParams:
    """Affine quantization: real = (q - zero_point) * scale, per tensor or along `axis`."""
    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    axis: int | None = None


@dataclass(frozen=True)
class TensorType:
    dtype: str                 # short name: f32 f16 f64 i8 u8 i16 u16 i32 u32 i64 u64 bool
    shape: tuple[int, ...]
    quant: QuantParams | None = None

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        return self.numel * np.dtype(dtype_to_numpy(self.dtype)).itemsize

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(dtype_to_numpy(self.dtype))

    def __str__(self) -> str:
        s = f"{self.dtype}[{','.join(map(str, self.shape))}]"
        if self.quant is not None:
            q = self.quant
            scale = ",".join(f"{x:.4g}" for x in q.scale[:4]) + (",..." if len(q.scale) > 4 else "")
            s += f"<scale=[{scale}], zero_point={q.zero_point[0]}" + \
                (f", axis={q.axis}>" if q.axis is not None else ">")
        return s

    @staticmethod
    def of(array: np.ndarray) -> "TensorType":
        return TensorType(numpy_to_dtype(array.dtype), tuple(array.shape))


class Value:
    """A tensor in the graph: a graph input, a weight (data is set) or an op result."""
    __slots__ = ("name", "type", "producer", "data")

    def __init__(self, name: str, type: TensorType, producer: "Op | None" = None,
                 data: np.ndarray | None = None):
        self.name = name
        self.type = type
        self.producer = producer
        self.data = data

    @property
    def is_param(self) -> bool:
        return self.data is not None

    def __repr__(self) -> str:
        return f"%{self.name}: {self.type}"


class Op:
    """One operation. inputs may contain None for an omitted optional operand."""
    __slots__ = ("kind", "inputs", "outputs", "attrs", "name", "loc")

    def __init__(self, kind: str, inputs: list[Value | None], outputs: list[Value],
                 attrs: dict[str, Any] | None = None, name: str = "", loc: str | None = None):
        self.kind = kind
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.attrs = dict(attrs or {})
        self.name = name          # the ONNX node name (or a generated one): errors cite it
        self.loc = loc            # "file:line:col" when parsed from text IR
        for v in self.outputs:
            v.producer = self

    @property
    def output(self) -> Value:
        return self.outputs[0]

    def describe(self) -> str:
        return f"node '{self.name}' ({self.kind})" if self.name else f"{self.kind} op"

    def __repr__(self) -> str:
        ins = ", ".join("_" if v is None else f"%{v.name}" for v in self.inputs)
        outs = ", ".join(f"%{v.name}" for v in self.outputs)
        return f"{outs} = {self.kind}({ins}) {self.attrs}"


@dataclass
class Graph:
    name: str
    inputs: list[Value] = field(default_factory=list)
    params: list[Value] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list)
    outputs: list[Value] = field(default_factory=list)

    # ---- queries -------------------------------------------------------------------------
    def values(self) -> Iterator[Value]:
        yield from self.inputs
        yield from self.params
        for op in self.ops:
            yield from op.outputs

    def value_map(self) -> dict[str, Value]:
        return {v.name: v for v in self.values()}

    def users(self) -> dict[Value, list[Op]]:
        """Map each value to the ops that read it (in op order, an op once per use)."""
        result: dict[Value, list[Op]] = {v: [] for v in self.values()}
        for op in self.ops:
            for v in op.inputs:
                if v is not None:
                    result.setdefault(v, []).append(op)
        return result

    def param(self, name: str) -> Value:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    # ---- building ------------------------------------------------------------------------
    def fresh_name(self, base: str) -> str:
        return unique_name(base, {v.name for v in self.values()})

    def add_param(self, name: str, data: np.ndarray) -> Value:
        data = np.asarray(data)
        if not data.flags.c_contiguous:       # (np.ascontiguousarray would make 0-d arrays 1-d)
            data = data.copy(order="C")
        v = Value(self.fresh_name(name), TensorType.of(data), data=data)
        self.params.append(v)
        return v

    def replace_all_uses(self, old: Value, new: Value) -> None:
        for op in self.ops:
            op.inputs = [new if v is old else v for v in op.inputs]
        self.outputs = [new if v is old else v for v in self.outputs]

    def remove_unused_params(self) -> None:
        used = {v for op in self.ops for v in op.inputs if v is not None} | set(self.outputs)
        self.params = [p for p in self.params if p in used]

    def topo_sort(self) -> None:
        """Re-establish topological op order (stable: keeps the current order where legal)."""
        ready = set(self.inputs) | set(self.params)
        pending, ordered = list(self.ops), []
        while pending:
            rest = []
            for op in pending:
                if all(v is None or v in ready for v in op.inputs):
                    ordered.append(op)
                    ready.update(op.outputs)
                else:
                    rest.append(op)
            if len(rest) == len(pending):
                from .errors import ModelError
                raise ModelError(f"graph '{self.name}': cycle or dangling input at "
                                 f"{rest[0].describe()}")
            pending = rest
        self.ops = ordered

    def clone(self) -> "Graph":
        """A structural copy sharing weight arrays (passes must not mutate arrays in place)."""
        mapping: dict[Value, Value] = {}

        def copy(v: Value | None) -> Value | None:
            if v is None:
                return None
            if v not in mapping:
                mapping[v] = Value(v.name, v.type, data=v.data)
            return mapping[v]

        g = Graph(self.name, [copy(v) for v in self.inputs], [copy(v) for v in self.params])
        for op in self.ops:
            new = Op(op.kind, [copy(v) for v in op.inputs], [copy(v) for v in op.outputs],
                     dict(op.attrs), op.name, op.loc)
            g.ops.append(new)
        g.outputs = [copy(v) for v in self.outputs]
        return g

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for op in self.ops:
            counts[op.kind] = counts.get(op.kind, 0) + 1
        return dict(sorted(counts.items()))

    def __repr__(self) -> str:
        return f"Graph({self.name!r}, {len(self.inputs)} inputs, {len(self.params)} params, " \
               f"{len(self.ops)} ops, {len(self.outputs)} outputs)"

