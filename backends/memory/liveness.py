"""Liveness of a graph's intermediate tensors: which values need arena storage, and when.

Every top-level op is one kernel, numbered by its position in the execution order (a Fused op is
one kernel; values inside its body never reach the arena). Graph inputs, params and outputs live
outside the arena: the caller passes input/output pointers and weights are stored separately.

Values that share storage form a group whose storage is owned by one *root* value:
- views (Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout) alias their operand, so the
  group lives until the last use of any member. A view of a graph input/param is stored there
  (no arena buffer). A view whose result is a graph output makes its arena group live in that
  output buffer (the producer writes straight into the caller's output), unless the group is
  already stored outside the arena — then the view is a real copy (it is not in `aliases`).
- concat elimination (optional): a Concat whose axis has only size-1 dims before it places each
  operand as a contiguous slice of its result, so the producers write straight into the result
  and the Concat is a no-op; the result's buffer lives from the first operand's producer. Nests
  (DenseNet's concat chains become one buffer). Values stored inside a larger buffer have an
  entry in `sub_offsets` (bytes from the start of their root's storage).
- in-place (optional): a kernel that reads an operand only elementwise (see inplace_operands)
  whose operand has the result's shape and element size, and whose operand group dies at this
  kernel, writes its result into that operand's storage.
All members of a group have the same byte size (views and in-place preserve it).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Collection, Sequence

from edgecc.ir import Graph, Op, Value
from edgecc.ops import has_trait

from edgecc.backends.memory.alloc import Buffer, align



def is_view(op: Op) -> bool:
    """A view op: its result aliases its operand's bytes."""
    return has_trait(op, "view")


def inplace_ok(op: Op) -> bool:
    """Elementwise ops and BatchNormalization (elementwise with per-channel constants), the
    "inplace_ok" trait. Normalizations that read a whole row before writing it (Softmax,
    Layer/InstanceNormalization) do not have it: their in-place safety would depend on the
    kernel's loop order."""
    return has_trait(op, "inplace_ok")


def inplace_operands(op: Op) -> set[int]:
    """Operand positions the kernel reads only elementwise on the way to its single result:
    result element i depends on them only through their element i, so the result may
    overwrite a same-shape one. For a Fused op, every body op that the operand reaches must be
    elementwise (conv_sum_relu may overwrite its skip input, not its conv input). Kernels with
    several results never qualify (a second result could read an overwritten operand)."""
    if len(op.outputs) != 1:
        return set()
    if inplace_ok(op):
        return set(range(len(op.inputs)))
    body = op.attrs.get("body") if op.kind == "Fused" else None
    if body is None:
        return set()
    safe = set()
    for j, arg in enumerate(body.inputs):
        reached, ok = {arg}, True
        for o in body.ops:
            if any(v in reached for v in o.inputs if v is not None):
                if not inplace_ok(o):
                    ok = False
                    break
                reached.update(o.outputs)
        if ok:
            safe.add(j)
    return safe


def workspace_name(op: Op, index: int) -> str:
    return f"workspace#{index}:{op.name or op.kind}"


@dataclass
class Liveness:
    order: list[Op]
    buffers: list[Buffer]                     # arena buffers: group roots, then workspaces
    aliases: dict[str, str]                   # value -> root value whose storage it shares
    external: dict[str, str]                  # value stored outside the arena -> input/param/output
    inplace: dict[str, str]                   # result -> operand whose storage it overwrote
    workspace: dict[int, str] = field(default_factory=dict)   # kernel position -> buffer name
    naive_bytes: int = 0                      # one aligned buffer per intermediate, no reuse
    sub_offsets: dict[str, int] = field(default_factory=dict)  # value -> bytes into its root

    def root(self, name: str) -> str:
        return self.aliases.get(name, name)


class _Groups:
    """Union-find over values with per-group storage kind and lifetime."""

    def __init__(self):
        self.parent: dict[Value, Value] = {}
        self.home: dict[Value, str] = {}      # root -> "arena" | "input" | "param" | "output"
        self.first: dict[Value, int] = {}
        self.last: dict[Value, int] = {}
        self.up: dict[Value, tuple[Value, int]] = {}  # root placed inside a value, at offset

    def add(self, v: Value, home: str, first: int, last: int):
        self.parent[v] = v
        self.home[v] = home
        self.first[v], self.last[v] = first, last

    def find(self, v: Value) -> Value:
        while self.parent[v] is not v:
            self.parent[v] = self.parent[self.parent[v]]
            v = self.parent[v]
        return v

    def union(self, a: Value, b: Value) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra is rb:
            return
        assert ra not in self.up and rb not in self.up, "a placed slice cannot merge"
        if self.home[ra] == "arena" and self.home[rb] != "arena":
            ra, rb = rb, ra                    # keep the external storage as root
        elif self.home[ra] == self.home[rb] == "arena" and self.first[rb] < self.first[ra]:
            ra, rb = rb, ra                    # an arena group is named by its first member
        self.parent[rb] = ra
        self.first[ra] = min(self.first[ra], self.first[rb])
        self.last[ra] = max(self.last[ra], self.last[rb])

    def top(self, v: Value) -> tuple[Value, int]:
        """The outermost root holding v's storage and v's byte offset in it."""
        r, off = self.find(v), 0
        while r in self.up:
            p, o = self.up[r]
            r, off = self.find(p), off + o
        return r, off

    def place_inside(self, child: Value, parent: Value, offset: int) -> None:
        """Store child's group at `offset` in parent's; every enclosing group outlives it."""
        rc = self.find(child)
        self.up[rc] = (parent, offset)
        r = rc
        while r in self.up:
            r = self.find(self.up[r][0])
            self.first[r] = min(self.first[r], self.first[rc])
            self.last[r] = max(self.last[r], self.last[rc])


def analyze(graph: Graph, order: Sequence[Op] | None = None, *, views: bool = True,
            inplace: bool = False, concat: bool | Collection[Op] = False,
            workspace: dict | None = None) -> Liveness:
    """Arena buffers with lifetimes in kernel positions of `order` (default: graph.ops).

    concat: eliminate every eligible Concat (True) or only those in the given collection.

    workspace maps a kernel (an index into graph.ops, or the Op itself) to the scratch bytes it
    needs; each becomes a buffer live only during that kernel.
    """
    order = list(graph.ops if order is None else order)
    if len(order) != len(graph.ops) or set(map(id, order)) != set(map(id, graph.ops)):
        raise ValueError("order must be a permutation of graph.ops")
    pos = {id(op): t for t, op in enumerate(order)}

    external = {v: "input" for v in graph.inputs}
    external.update({v: "param" for v in graph.params})
    for v in graph.outputs:
        external.setdefault(v, "output")

    groups = _Groups()
    for v, kind in external.items():
        groups.add(v, kind, -1, -1)
    for t, op in enumerate(order):
        for v in op.inputs:
            if v is not None and v not in groups.parent:
                raise ValueError(f"{op.describe()} at position {t} reads %{v.name} before it "
                                 f"is defined: order is not topological")
            if v is not None:
                groups.last[v] = max(groups.last[v], t)
        for v in op.outputs:
            if v in external and external[v] != "output":
                raise ValueError(f"{op.describe()} writes graph input/param %{v.name}")
            if v not in external:
                groups.add(v, "arena", t, t)
            else:
                groups.first[v] = t

    naive = sum(align(v.type.nbytes) for op in order for v in op.outputs if v not in external)

    if views:
        for op in order:
            if is_view(op) and op.inputs and op.inputs[0] is not None:
                src, dst = op.inputs[0], op.output
                both_external = (groups.home[groups.find(src)] != "arena"
                                 and groups.home[groups.find(dst)] != "arena")
                if not both_external:          # otherwise the view is a copy kernel
                    groups.union(src, dst)

    if concat:
        for op in order:
            if op.kind == "Concat" and (concat is True or op in concat):
                _eliminate_concat(op, groups)

    inplace_of: dict[str, str] = {}
    if inplace:
        for t, op in enumerate(order):
            safe = inplace_operands(op)
            if safe:
                x = _inplace_operand(op, t, groups, safe)
                if x is not None:
                    groups.union(x, op.output)
                    inplace_of[op.output.name] = x.name

    aliases: dict[str, str] = {}
    sub_offsets: dict[str, int] = {}
    stored_outside: dict[str, str] = {}
    buffers: list[Buffer] = []
    for v in groups.parent:
        r, off = groups.top(v)                 # the root names the storage
        if v is not r:
            aliases[v.name] = r.name
        if off:
            sub_offsets[v.name] = off
        if groups.home[r] != "arena":
            stored_outside[v.name] = groups.home[r]
        elif v is r:
            buffers.append(Buffer(r.name, r.type.nbytes, groups.first[r], groups.last[r]))
    buffers.sort(key=lambda b: (b.first, b.name))

    ws_names: dict[int, str] = {}
    names = {v.name for v in groups.parent}
    for key, nbytes in (workspace or {}).items():
        op = graph.ops[key] if isinstance(key, int) else key
        if id(op) not in pos:
            raise ValueError(f"workspace given for {op!r}, which is not in the graph")
        if nbytes <= 0:
            continue
        t = pos[id(op)]
        name = workspace_name(op, graph.ops.index(op))
        if name in names:
            raise ValueError(f"workspace buffer name {name} clashes with a value")
        ws_names[t] = name
        buffers.append(Buffer(name, int(nbytes), t, t))
        naive += align(nbytes)

    return Liveness(order, buffers, aliases, stored_outside, inplace_of, ws_names, naive,
                    sub_offsets)


def _eliminate_concat(op: Op, groups: _Groups) -> None:
    """Place every operand of `op` as a slice of its arena result, when each is a contiguous
    byte range of it and an arena group of its own that no other concat has placed.
    (Slices stay in the arena: values in caller/weight buffers are always at offset 0.)"""
    out = op.output
    axis = op.attrs["axis"]
    if any(d != 1 for d in out.type.shape[:axis]) or groups.home[groups.find(out)] != "arena":
        return
    roots = [None if x is None else groups.find(x) for x in op.inputs]
    if any(r is None or groups.home[r] != "arena" or r in groups.up for r in roots) \
            or len(set(roots)) != len(roots) or groups.find(out) in roots:
        return
    offset = 0
    for x in op.inputs:
        groups.place_inside(x, out, offset)
        offset += x.type.nbytes


def _inplace_operand(op: Op, t: int, groups: _Groups, safe: set[int]) -> Value | None:
    """An operand (among positions `safe`) whose storage op's result may take over, or None."""
    out = op.output
    r_out = groups.find(out)
    for j in sorted(safe):
        x = op.inputs[j]
        if x is None or x.type.shape != out.type.shape \
                or x.type.np_dtype.itemsize != out.type.np_dtype.itemsize:
            continue
        rx = groups.find(x)
        if rx is r_out or groups.last[rx] != t or groups.home[rx] != "arena" \
                or rx in groups.up or r_out in groups.up:
            continue                           # (a slice of a concat keeps its own place)
        if groups.home[r_out] != "arena" and \
                any(groups.find(p) is rx for p, _ in groups.up.values()):
            continue                           # slices stay in the arena (see _eliminate_concat)
        # an operand read elsewhere than at index i (another value in the same storage, or x
        # itself at a position that is not elementwise) would see overwritten data
        if any(y is not None and groups.top(y)[0] is rx and (y is not x or k not in safe)
               for k, y in enumerate(op.inputs)):
            continue
        return x
    return None


def liveness(graph: Graph, order: Sequence[Op] | None = None, *, views: bool = True,
             inplace: bool = False, concat: bool | Collection[Op] = False,
             workspace: dict | None = None) -> list[Buffer]:
    """The arena buffers (see `analyze` for aliases and in-place sharing)."""
    return analyze(graph, order, views=views, inplace=inplace, concat=concat,
                   workspace=workspace).buffers
