"""Passes, pipelines and the pass manager.

A pass is a small frozen dataclass whose fields are its options, registered by one line
(edgecc.pass_registry, a leaf the passes import):

    @register_pass
    @dataclass(frozen=True)
    class FuseConvBN:
        name = "fuse-conv-bn"
        tolerance = 1e-5          # max output drift it promises, relative to the output's scale
        eps: float = 1e-5         # an option: -p 'fuse-conv-bn{eps=1e-3}'
        def run(self, graph, ctx) -> bool: ...      # rewrites graph in place; True if changed

`PassManager(passes, target=t).run(graph)` runs them in order, verifies the IR after each pass, records
{name, changed, seconds} per pass (report.json's `passes`), prints the IR after chosen passes
and, with check_numerics, runs the reference executor on seeded inputs before the pipeline and
after every pass: a pass whose outputs drift beyond its tolerance raises NumericError naming
the pass and the output. `bisect(graph, passes)` finds the first pass of a pipeline whose
result stops matching the unoptimized graph.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import sys
import time
import typing
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np

from .errors import EdgeccError, ModelError, NumericError, UsageError, option
from .ir import Graph
from .numerics import compare, seeded_inputs
from .pass_registry import PASSES, PassContext, register_pass, tolerance_of  # noqa: F401

def available_passes() -> dict[str, type]:
    """Every registered pass by name (imports edgecc.passes, which registers them)."""
    from edgecc import passes  # noqa: F401
    return dict(sorted(PASSES.items()))


# ---- pass specs: name{opt=value,...} --------------------------------------------------------

def split_specs(text: str) -> list[str]:
    """'a,b{x=1,y=2},c' -> ['a', 'b{x=1,y=2}', 'c'] (commas inside braces do not split)."""
    specs, depth, cur = [], 0, ""
    for ch in text:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            specs.append(cur.strip())
            cur = ""
        else:
            cur += ch
    specs.append(cur.strip())
    return [s for s in specs if s]


def _convert(pass_name: str, f: dataclasses.Field, hints: dict, text: str) -> Any:
    kind = hints.get(f.name, f.type)
    if f.default is not dataclasses.MISSING and f.default is not None:
        kind = type(f.default)
    kinds = [k for k in typing.get_args(kind) if k is not type(None)] or [kind]
    for k in kinds:
        try:
            if k is bool:
                if text.lower() in ("1", "true", "yes", "on"):
                    return True
                if text.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(text)
            if k in (int, float, str):
                return k(text)
        except ValueError:
            continue
    names = "/".join(getattr(k, "__name__", str(k)) for k in kinds)
    raise UsageError(f"pass '{pass_name}': option {f.name}={text!r} is not a valid {names}")


def parse_pass(spec: str):
    """`name` or `name{opt=value,...}` -> a pass instance (UsageError on anything unknown)."""
    spec = spec.strip()
    name, brace, rest = spec.partition("{")
    name = name.strip()
    passes = available_passes()
    if name not in passes:
        close = difflib.get_close_matches(name, passes, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise UsageError(f"unknown pass '{name}'{hint} (see --list-passes)")
    cls = passes[name]
    kwargs = {}
    if brace:
        if not rest.endswith("}"):
            raise UsageError(f"pass spec '{spec}' must look like {name}{{option=value,...}}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        hints = typing.get_type_hints(cls)
        for item in split_specs(rest[:-1]):
            key, eq, value = item.partition("=")
            key = key.strip()
            if not eq or key not in fields:
                known = ", ".join(fields) or "none"
                raise UsageError(f"pass '{name}': unknown option '{key}' (options: {known})")
            kwargs[key] = _convert(name, fields[key], hints, value.strip())
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise UsageError(f"pass '{name}': {e}") from None


def parse_pipeline(text: str) -> list:
    """'eliminate-identity,fuse-conv-bn{eps=1e-3}' -> pass instances."""
    return [parse_pass(s) for s in split_specs(text)]


def spec_of(p) -> str:
    """The spec that parse_pass turns back into `p` (options only where not default)."""
    opts = []
    for f in dataclasses.fields(p):
        v = getattr(p, f.name)
        if f.default is dataclasses.MISSING or v != f.default:
            opts.append(f"{f.name}={v}")
    return p.name + ("{" + ",".join(opts) + "}" if opts else "")


# ---- pipelines ------------------------------------------------------------------------------

# The -O levels. Specs, so options can be given: "fuse-conv-bn{eps=1e-5}".
_CLEANUP = ["fold-constants", "eliminate-identity", "eliminate-noop-movement",
            "simplify-algebra", "fold-pad", "cse", "dce"]
# fuse-hardswish runs before simplify-algebra, which would merge the /6 of x*relu6(x+3)/6
# into a following scale and hide the pattern.
_FUSION = ["fold-constants", "eliminate-identity", "eliminate-noop-movement", "fuse-hardswish",
           "simplify-algebra", "fold-pad", "cse", "fuse-conv-bn", "lower-batchnorm",
           "conv1d-as-2d", "batch-gemms", "fuse-kernels", "dce"]
# -O3 also folds per-channel scales/shifts that feed a convolution into its weights and runs
# conv regions in the blocked channel layout of the target's vectors.
_O3 = [p for p in _FUSION if p != "fuse-kernels"]
_O3.insert(_O3.index("lower-batchnorm") + 1, "fold-affine-into-conv")
_O3.insert(_O3.index("dce"), "convert-layout")
_O3.insert(_O3.index("dce"), "fuse-kernels")
PIPELINES: dict[int, list[str]] = {
    0: [],
    1: _CLEANUP,
    2: _FUSION,
    3: _O3,
}


def pipeline(level: int) -> list:
    if level not in PIPELINES:
        raise UsageError(f"-O{level} is not a level; use -O0, -O1, -O2 or -O3")
    return [parse_pass(s) for s in PIPELINES[level]]


def _summary(cls: type) -> str:
    """The first sentence of the pass module's docstring, without its "name:" prefix."""
    doc = (sys.modules[cls.__module__].__doc__ or "").strip()
    para = " ".join(doc.split("\n\n")[0].split())
    if para.startswith(cls.name + ":"):
        para = para[len(cls.name) + 1:].strip()
    end = para.find(". ")
    return para[:end + 1] if end >= 0 else para


def describe_pipelines() -> str:
    """The text of --list-passes: each -O level's pipeline, then every pass."""
    lines = ["pipelines:"]
    for level, specs in PIPELINES.items():
        lines.append(f"  -O{level}: {', '.join(specs) if specs else '(no passes)'}")
    lines.append("passes (tolerance: max output drift relative to the output's scale):")
    for name, cls in available_passes().items():
        opts = ", ".join(f"{f.name}={f.default}" for f in dataclasses.fields(cls)
                         if f.default is not dataclasses.MISSING)
        opts = f" {{{opts}}}" if opts else ""
        lines.append(f"  {name}{opts}  [tol {tolerance_of(cls):g}]  {_summary(cls)}")
    return "\n".join(lines)


# ---- numerics -------------------------------------------------------------------------------

def reference_outputs(graph: Graph, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    from edgecc.kernels import run_graph
    return list(run_graph(graph, feeds))


def output_error(got: np.ndarray, want: np.ndarray) -> tuple[float, float]:
    """(error relative to the output's scale, max |want|): numerics.compare with dtypes
    required to agree (a pass must not change an output's type)."""
    e = compare(got, want, same_dtype=True)
    return e.rel, e.scale


def worst_drift(graph: Graph, got: list, want: list) -> tuple[str, float, float] | None:
    """(output name, relative error, scale) of the output that drifted most, or None when
    all are identical. A changed output count is an infinite drift."""
    if len(got) != len(want):
        return f"({len(want)} outputs became {len(got)})", math.inf, 0.0
    worst = None
    for v, g, w in zip(graph.outputs, got, want):
        err, scale = output_error(np.asarray(g), np.asarray(w))
        if err > 0 and (worst is None or err > worst[1]):
            worst = (v.name, err, scale)
    return worst


def first_drifting_value(before: Graph, after: Graph, feeds, tol: float
                         ) -> tuple[str, str, float] | None:
    """(name, producer description, relative error) of the first op result of `after`, in op
    order, that differs beyond `tol` from the same-named value of `before` — a best-effort
    pointer at where a rewrite went wrong (values a pass renamed are not compared)."""
    from edgecc.kernels import run_graph
    _, old = run_graph(before, feeds, keep_all=True)
    _, new = run_graph(after, feeds, keep_all=True)
    for op in after.ops:
        for v in op.outputs:
            if v.name in old:
                err, _ = output_error(np.asarray(new[v.name]), np.asarray(old[v.name]))
                if err > tol:
                    return v.name, op.describe(), err
    return None


@dataclass
class BisectResult:
    index: int            # position of the first bad pass in the pipeline
    spec: str             # its spec
    output: str           # the output that drifted most
    error: float          # relative error of that output after the pass
    tolerance: float      # what the passes so far promise together

    def __str__(self) -> str:
        return (f"first bad pass: '{self.spec}' (#{self.index + 1}): output %{self.output} "
                f"differs from the unoptimized graph by {self.error:.3g} relative to its "
                f"scale (the passes up to it promise {self.tolerance:g})")


def deep_clone(graph: Graph) -> Graph:
    """Graph.clone() that also copies Fused bodies (so passes on the copy cannot touch them)."""
    g = graph.clone()
    for op in g.ops:
        for k, v in op.attrs.items():
            if isinstance(v, Graph):
                op.attrs[k] = deep_clone(v)
    return g


def bisect(graph: Graph, passes: list, seed: int = 0, ctx: PassContext | None = None
           ) -> BisectResult | None:
    """The first pass after which the pipeline's outputs stop matching the unoptimized
    graph's (beyond the sum of the tolerances so far), or None if the whole pipeline matches.
    `graph` is not modified. Binary search: log2(len(passes)) executor runs."""
    feeds = seeded_inputs(graph, seed)
    want = reference_outputs(graph, feeds)

    def probe(k: int) -> BisectResult | None:
        g = deep_clone(graph)
        for p in passes[:k]:
            p.run(g, ctx or PassContext())
        tol = sum(tolerance_of(p) for p in passes[:k])
        drift = worst_drift(g, reference_outputs(g, feeds), want)
        if drift is None or drift[1] <= tol:
            return None
        return BisectResult(k - 1, spec_of(passes[k - 1]), drift[0], drift[1], tol)

    bad = probe(len(passes)) if passes else None
    if bad is None:
        return None
    lo, hi = 0, len(passes)           # prefix lo matches, prefix hi does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        r = probe(mid)
        if r is None:
            lo = mid
        else:
            hi, bad = mid, r
    return bad


# ---- the pass manager -----------------------------------------------------------------------

class PassVerificationError(RuntimeError):
    """A pass produced invalid IR: a bug in that pass, not in the user's model."""


class PassManager:
    def __init__(self, passes: list, *, print_after_all: bool = False,
                 print_after: set[str] | tuple | list = (), check_numerics: bool = False,
                 stream: TextIO | None = None, seed: int = 0, verify: bool = True,
                 ctx: PassContext | None = None, target=None):
        """`target` (compiler.target.Target): what target-dependent passes (convert-layout)
        build for; or give a whole `ctx`."""
        self.passes = list(passes)
        self.print_after_all = print_after_all
        self.print_after = set(print_after)
        unknown = sorted(self.print_after - set(available_passes()))
        if unknown:
            raise UsageError(f"{option('print_after')}: unknown pass {', '.join(unknown)} "
                             f"(`edgecc --list-passes` lists them)")
        self.check_numerics = check_numerics
        self.stream = stream if stream is not None else sys.stderr
        self.seed = seed
        self.verify = verify
        self.ctx = ctx or PassContext(stream=stream, target=target)
        self.records: list[dict] = []

    def run(self, graph: Graph) -> Graph:
        """Run every pass on `graph` (in place); returns it. Records go to self.records."""
        feeds = want = None
        if self.check_numerics:
            feeds = seeded_inputs(graph, self.seed)
            want = reference_outputs(graph, feeds)
        for p in self.passes:
            before = deep_clone(graph) if self.check_numerics else None
            t0 = time.perf_counter()
            try:
                changed = bool(p.run(graph, self.ctx))
            except ModelError as e:      # a pass that builds an invalid op: edgecc's bug
                raise PassVerificationError(f"pass '{spec_of(p)}' failed: {e.message}") \
                    from None
            seconds = time.perf_counter() - t0
            self.records.append({"name": p.name, "changed": changed,
                                 "seconds": round(seconds, 6)})
            # verified and checked even when the pass says "unchanged": that claim is
            # exactly what a buggy pass might get wrong
            if self.verify:
                self._verify(graph, p)
            if self.print_after_all or p.name in self.print_after:
                self._dump(graph, p, changed)
            if self.check_numerics:
                want = self._check(graph, before, p, feeds, want)
        return graph

    def bisect(self, graph: Graph) -> BisectResult | None:
        return bisect(graph, self.passes, self.seed, self.ctx)

    def _verify(self, graph: Graph, p) -> None:
        from .ops import verify_graph
        try:
            verify_graph(graph)
        except ModelError as e:
            raise PassVerificationError(f"pass '{spec_of(p)}' produced invalid IR: "
                                        f"{e.message}") from None

    def _dump(self, graph: Graph, p, changed: bool) -> None:
        from .textir import print_graph
        note = "" if changed else " (unchanged)"
        print(f"// -----// IR after {spec_of(p)}{note} //----- //", file=self.stream)
        print(print_graph(graph), end="", file=self.stream, flush=True)

    def _check(self, graph: Graph, before: Graph, p, feeds, want) -> list:
        """Compare with the outputs before this pass; returns the new outputs."""
        try:
            got = reference_outputs(graph, feeds)
        except EdgeccError as e:
            raise type(e)(f"after pass '{spec_of(p)}': {e.message}") from None
        drift = worst_drift(graph, got, want)
        tol = tolerance_of(p)
        if drift is not None and drift[1] > tol:
            name, err, scale = drift
            first = first_drifting_value(before, graph, feeds, tol)
            where = (f"; the first value to differ from its namesake before the pass is "
                     f"%{first[0]} ({first[1]}, {first[2]:.3g})" if first else "")
            raise NumericError(
                f"pass '{spec_of(p)}' changed output %{name} by {err:.3g} relative to its "
                f"scale (max |value| {scale:.3g}); the pass promises at most {tol:g}{where}. "
                f"Rerun with {option('print_after', p.name)} to see its result")
        return got
