"""decompose: layers with low-rank weights become thin layers that do less work (--decompose).

  KxK Conv (group 1)            -> Tucker-2: 1x1 reduce -> KxK core -> 1x1 expand (+ bias)
  1x1 Conv, Gemm, MatMul [K, N] -> truncated SVD: two thin layers of rank r
(the factors: passes/_decompose_factors.py). Ops sharing one weight (the cells of an unrolled
RNN) are one layer: decomposed together, their factors shared. With calibration samples
(--calib) the factors are fitted to each layer's real output and the last one re-fitted on the
decomposed network's own activations; without, they come from the weights alone and a layer
keeps the smallest rank holding ENERGY of its weights.

Which layers, at which rank, is chosen for the whole model:
  1. Time. A rank level (RANK_FRACTIONS of the channels, whole vectors of the target) counts
     for a layer only where the cost model of edgecc's kernels (passes/_decompose_cost.py)
     says its factors run at least MIN_SAVING faster than the layer: thin layers with few
     channels can be slower than their FLOPs suggest, and a memory-bound product (an RNN
     cell's input projection) gains from the smaller weights more than its FLOPs say.
  2. Accuracy. Each layer's factors at each level are put, one layer at a time, into the
     compiled float model (as the single weight they compute) and the error they cause on
     the model's outputs measured on calibration samples not used to fit them.
  3. Greedy knapsack: the move (a layer to a lower rank) that saves the most time per unit of
     output error is taken while the summed error stays within the budget `min_sqnr` (and
     until `budget` of the conv/gemm FLOPs are removed, when set).
  4. The decomposed graph is built, its last factors re-fitted, and its output SQNR checked on
     held-out calibration samples; while it misses `min_sqnr` the error budget shrinks.
Grouped and depthwise convs are left alone (no low-rank form pays), as are layers with fewer
than MIN_CHANNELS channels on a side and layers whose weights are not constants; each
refusal is recorded with its reason. The report section `decompose` lists every layer.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from edgecc.errors import UsageError
from edgecc.ir import Graph, Op
from edgecc.ops import build_op, count_flops

from edgecc.pass_registry import register_pass

from ._decompose_cost import MIN_SAVING, Kernel, conv_kernel, seconds, with_conversions
from ._decompose_factors import (Factorizer, PatchData, channel_moment, conv_patches,
                                 refit_last)
from ._graph_runner import fused, graph_runner, replace_contents
from ._rewrite import const, record_refusal, replace

RANK_FRACTIONS = (0.125, 0.1875, 0.25, 0.3125, 0.375, 0.4375, 0.5, 0.5625, 0.625, 0.6875,
                  0.75)     # rank / channels, per level (svd: of min(M, C) / 2)
MAX_FLOPS_RATIO = 0.8        # a level must remove at least 20% of the layer's FLOPs (or,
                             # memory-bound, be MIN_SAVING faster by the cost model)
MIN_CHANNELS = 16
ENERGY = 0.995               # data-free rank: the weights' energy kept
FIT_SAMPLES = 8              # the factors and their re-fits are fitted on these samples
NOISE_SAMPLES = 4            # each (layer, level)'s output error is measured on the next ones
CHECK_SAMPLES = 8            # and the SQNR budget checked on the next (held out from both
MIN_HELD_OUT = 4             # when there are at least this many; else they overlap)
PATCHES = 12000              # sampled output positions a layer's factors are fitted on
MAX_ROUNDS = 5
# factor ops are named <layer>/<suffix> (profiles map kernels back to their layer by them)
FACTOR_SUFFIXES = ("/reduce", "/core", "/expand", "/svd_v", "/svd_u", "/svd_bias")


@dataclass(eq=False)
class Layer:
    ops: list[Op]                      # the ops reading this weight (one, or an RNN's cells)
    method: str                        # svd | tucker2
    w: np.ndarray                      # as [M, C, *k] (Gemm/MatMul: [N, K])
    bias: np.ndarray | None
    levels: dict[int, tuple[int, ...]] = field(default_factory=dict)  # level -> ranks
    data: PatchData | None = None
    sqnr_db: dict = field(default_factory=dict)   # level -> output SQNR with it alone
    why: str | None = None             # why it was left alone
    factorizer: Factorizer | None = None

    @property
    def op(self) -> Op:
        return self.ops[0]

    @property
    def flops(self) -> int:
        return int(sum(count_flops(op) for op in self.ops))

    def kernels(self, ranks: tuple[int, ...] | None, lanes: int) -> list[Kernel]:
        """The kernels of the layer (ranks None) or of its factors at `ranks`."""
        out = []
        for op in self.ops:
            m, c = self.w.shape[:2]
            rows_out = op.output.type.numel // m
            if op.kind != "Conv":
                dims = [c] + list(ranks or ()) + [m]
                out += [conv_kernel(a, b, 1, rows_out, rows_out, lanes, dense=True)
                        for a, b in zip(dims, dims[1:])]
                continue
            taps = int(np.prod(self.w.shape[2:]))
            rows_in = op.inputs[0].type.numel // c
            if ranks is None:
                out.append(conv_kernel(c, m, taps, rows_in, rows_out, lanes))
                continue
            if self.method == "svd":
                chain = [conv_kernel(c, ranks[0], taps, rows_in, rows_out, lanes),
                         conv_kernel(ranks[0], m, 1, rows_out, rows_out, lanes)]
            else:
                r_in, r_out = ranks
                chain = [conv_kernel(c, r_in, 1, rows_in, rows_in, lanes),
                         conv_kernel(r_in, r_out, taps, rows_in, rows_out, lanes),
                         conv_kernel(r_out, m, 1, rows_out, rows_out, lanes)]
            out += with_conversions(chain, conv_kernel(c, m, taps, rows_in, rows_out,
                                                       lanes).blocked)
        return out

    def factor_flops(self, ranks: tuple[int, ...]) -> int:
        return sum(k.flops for k in self.kernels(ranks, 1))

    def factor_params(self, ranks: tuple[int, ...]) -> int:
        """Weights of the factors (shared by the layer's ops: counted once)."""
        per_op = len(self.kernels(ranks, 1)) // len(self.ops)
        return sum(k.weight_bytes for k in self.kernels(ranks, 1)[:per_op]) // 4

    def seconds_saved(self, ranks: tuple[int, ...], lanes: int) -> float:
        """Estimated seconds the factors at `ranks` save; 0 when they do not save
        MIN_SAVING of the layer's time."""
        before = seconds(self.kernels(None, lanes), lanes)
        saved = before - seconds(self.kernels(ranks, lanes), lanes)
        return saved if saved >= MIN_SAVING * before else 0.0

    def describe(self) -> str:
        more = f" (and {len(self.ops) - 1} more sharing its weights)" if len(self.ops) > 1 \
            else ""
        return f"{self.op.name}{more}"


@register_pass
@dataclass(frozen=True)
class Decompose:
    name = "decompose"
    tolerance = 1.0            # its promise is the output SQNR budget on the calibration samples
    min_sqnr: float = 28.0     # default: >= 25 dB on other inputs with a margin (README)
    budget: float = 0.0        # stop once this fraction of conv/gemm FLOPs is removed (0: none)

    def run(self, graph: Graph, ctx) -> bool:
        if not 0.0 <= self.budget <= 1.0:
            raise UsageError(f"decompose: budget {self.budget} must be a fraction of the "
                             f"FLOPs between 0 and 1 (0: no limit)")
        lanes = _lanes(ctx)
        layers, refused = candidates(graph, ctx, lanes)
        total = sum(count_flops(op) for op in graph.ops
                    if op.kind in ("Conv", "Gemm", "MatMul", "ConvTranspose"))
        samples = _samples(ctx)
        results = {"layers": 0, "flops_saved": 0, "params_saved": 0, "sqnr_db": None,
                   "method": "data-aware" if samples else "data-free",
                   "conv_gemm_flops": int(total), "layers_detail": []}
        chosen, sqnr, dec = {}, None, None
        if layers and samples:
            chosen, sqnr, dec = self._data_aware(graph, ctx, layers, samples, lanes, total,
                                                 results)
        elif layers:
            chosen, dec = self._data_free(graph, ctx, layers, lanes)
        if chosen:
            replace_contents(graph, dec)
            results.update(_summary(chosen, sqnr))
        _publish(ctx, results, layers, chosen, refused)
        return bool(chosen)

    # ---- with calibration samples ----------------------------------------------------------

    def _data_aware(self, graph, ctx, layers, samples, lanes, total, results):
        fit, probe, check = _split(samples)
        run_float = _runner(graph, ctx, keep_all=True)
        wanted = {v.name for lay in layers for op in lay.ops for v in (op.inputs[0], op.output)}
        envs = []
        for feeds in fit:
            _, env = run_float(feeds)
            envs.append({n: env[n] for n in wanted})
        run_outs = _runner(graph, ctx)
        probe_outs, check_outs = run_outs(probe), run_outs(check)
        rng = np.random.default_rng(0)
        for lay in layers:
            lay.data = _patch_data(lay, envs, rng)
        saved = {(id(lay), j): lay.seconds_saved(r, lanes) for lay in layers
                 for j, r in lay.levels.items()}
        for lay in layers:
            lay.levels = {j: r for j, r in lay.levels.items() if saved[(id(lay), j)] > 0}
            if not lay.levels:
                lay.why = (f"its factors are not {MIN_SAVING:.0%} faster than the layer at any "
                           f"rank (cost model of the target's kernels)")
                record_refusal(ctx, self.name, lay.op, lay.why)
        layers = [lay for lay in layers if lay.levels]
        factors = {(id(lay), j): _factors(lay, j) for lay in layers for j in lay.levels}
        noise = _output_noise(graph, ctx, layers, factors, probe, probe_outs)
        signal = sum(float(np.sum(np.square(o.astype(np.float64))))
                     for outs in probe_outs for o in outs)
        for lay in layers:
            for j in lay.levels:
                lay.sqnr_db[j] = round(10 * math.log10(max(signal, 1e-30) /
                                                       max(noise[(id(lay), j)], 1e-30)), 2)
            lay.why = (f"its factors would break the accuracy budget (alone at most "
                       f"{max(lay.sqnr_db.values()):.1f} dB)")
        allowed = signal / 10 ** (self.min_sqnr / 10)
        rounds = []
        results["rounds"] = rounds
        for _ in range(MAX_ROUNDS):
            chosen = _select(layers, saved, noise, allowed, self.budget * total)
            if not chosen:
                break
            dec, parts = _build(graph, chosen, factors)
            sqnr = _refit_and_check(dec, parts, ctx, fit, envs, check, check_outs)
            rounds.append({"allowed_db": round(10 * math.log10(signal / allowed), 2),
                           "sqnr_db": round(sqnr, 2), "layers": len(chosen)})
            if sqnr >= self.min_sqnr:
                return chosen, sqnr, dec
            # the estimate was optimistic by the shortfall: shrink the error budget by it
            allowed *= 10 ** ((sqnr - self.min_sqnr) / 10) * 0.8
        return {}, None, None

    # ---- without: rank from the weights' energy ----------------------------------------------

    def _data_free(self, graph, ctx, layers, lanes):
        factors, chosen = {}, {}
        for lay in layers:
            for j in sorted(lay.levels):
                f = _factors(lay, j)
                err = np.sum((f.effective() - lay.w) ** 2) / max(np.sum(lay.w ** 2), 1e-30)
                if 1 - err < ENERGY:
                    continue
                if lay.seconds_saved(lay.levels[j], lanes) <= 0:
                    lay.why = (f"its factors at the rank keeping {ENERGY:.1%} of the weights' "
                               f"energy are not {MIN_SAVING:.0%} faster than the layer")
                    break
                factors[(id(lay), j)] = f
                chosen[lay] = j
                break
            else:
                lay.why = (f"no rank keeps {ENERGY:.1%} of the weights' energy with fewer "
                           f"FLOPs (data-free: give --calib for ranks fitted to the data)")
            if lay not in chosen:
                record_refusal(ctx, self.name, lay.op, lay.why)
        if not chosen:
            return {}, None
        return chosen, _build(graph, chosen, factors)[0]


# ---- candidates -------------------------------------------------------------------------------

def candidates(graph: Graph, ctx, lanes: int) -> tuple[list[Layer], list[tuple[Op, str]]]:
    """(the layers a low-rank form may pay for, each with its rank levels; the refused
    convs/gemms with the reason, also recorded in the context)."""
    readers: dict = {}
    for op in graph.ops:
        for v in op.inputs:
            if v is not None:
                readers.setdefault(v, []).append(op)
    out, refused, seen = [], [], set()
    for op in graph.ops:
        if op.kind not in ("Conv", "Gemm", "MatMul") or op in seen:
            continue
        group = readers.get(op.inputs[1], [op]) if const(op.inputs[1]) is not None else [op]
        seen.update(group)
        lay = _as_layer(op, group)
        if lay is None:
            continue
        if isinstance(lay, str):
            for o in group:
                record_refusal(ctx, Decompose.name, o, lay)
                refused.append((o, lay))
            continue
        lay.levels = _levels(lay, lanes)
        if not lay.levels:
            lay.why = (f"no rank (multiples of {lanes}) removes {1 - MAX_FLOPS_RATIO:.0%} of "
                       f"its {lay.flops} FLOPs or is {MIN_SAVING:.0%} faster")
            record_refusal(ctx, Decompose.name, op, lay.why)
            refused.append((op, lay.why))
            continue
        out.append(lay)
    return out, refused


def _same_layer(a: Op, b: Op) -> bool:
    """Ops sharing a weight can share its factors too: same kind, attributes and bias."""
    if a.kind != b.kind or a.attrs != b.attrs or len(a.inputs) != len(b.inputs) or \
            a.inputs[1] is not b.inputs[1]:
        return False
    for u, v in zip(a.inputs[2:], b.inputs[2:]):
        cu, cv = const(u), const(v)
        if u is not v and (cu is None or cv is None or cu.shape != cv.shape or
                           not np.array_equal(cu, cv)):
            return False
    return True


def _as_layer(op: Op, group: list[Op]) -> Layer | str | None:
    x = op.inputs[0]
    if x.type.dtype != "f32" or op.output.type.dtype != "f32":
        return None
    wv = op.inputs[1]
    w = const(wv)
    if w is None:
        return None if op.kind == "MatMul" else "its weights are not constants"
    if any(not _same_layer(o, op) for o in group):
        return (f"its weights %{wv.name} are also read by a different op "
                f"({', '.join(sorted({o.kind for o in group}))})")
    if op.kind == "Conv":
        a = op.attrs
        if a["group"] != 1:
            return "grouped/depthwise conv: no low-rank form pays (left alone)"
        b = const(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] is not None else None
        if len(op.inputs) > 2 and op.inputs[2] is not None and b is None:
            return "its bias is not a constant"
        m, c = w.shape[:2]
        method = "svd" if all(k == 1 for k in a["kernel_shape"]) else "tucker2"
        wm = w
    elif op.kind == "Gemm":
        a = op.attrs
        bmat = w.T if a["transB"] else w                          # [K, N]
        wm = (a["alpha"] * bmat).T                                # [N, K]
        cv = op.inputs[2] if len(op.inputs) > 2 else None
        b = None
        if cv is not None:
            cc = const(cv)
            if cc is None:
                return "its C is not a constant"
            n = wm.shape[0]
            if cc.size not in (1, n) or (cc.ndim == 2 and cc.shape[0] != 1):
                return f"its C {list(cc.shape)} is not one row per output column"
            b = np.broadcast_to(a["beta"] * cc.reshape(-1), (n,)).copy()
        m, c = wm.shape
        method = "svd"
    else:   # MatMul with a constant 2-D right side
        if w.ndim != 2 or x.type.rank < 2:
            return None
        wm, b = w.T, None
        m, c = wm.shape
        method = "svd"
    if min(m, c) < MIN_CHANNELS:
        return f"layer too small ({c} -> {m} channels; at least {MIN_CHANNELS} on each side)"
    return Layer(list(group), method, np.asarray(wm, np.float64),
                 None if b is None else np.asarray(b, np.float64))


def _round_rank(x: float, lanes: int, limit: int) -> int:
    return int(min(max(lanes, lanes * round(x / lanes)), limit))


def _levels(lay: Layer, lanes: int) -> dict[int, tuple[int, ...]]:
    """Rank levels (index into RANK_FRACTIONS -> ranks) whose factors do at most
    MAX_FLOPS_RATIO of the layer's FLOPs or are estimated MIN_SAVING faster (memory-bound
    products); ranks are whole vectors of the target."""
    m, c = lay.w.shape[:2]
    levels, seen = {}, set()
    for j, frac in enumerate(RANK_FRACTIONS):
        if lay.method == "tucker2":
            ranks = (_round_rank(frac * c, lanes, c), _round_rank(frac * m, lanes, m))
        else:
            ranks = (_round_rank(frac * min(m, c) * 2, lanes, min(m, c)),)
        if ranks in seen or ranks == (c, m) or ranks == (min(m, c),):
            continue
        seen.add(ranks)
        if lay.factor_flops(ranks) <= MAX_FLOPS_RATIO * lay.flops or \
                lay.seconds_saved(ranks, lanes) > 0:
            levels[j] = ranks
    return levels


# ---- calibration data and factors ---------------------------------------------------------------

def _split(samples: list) -> tuple[list, list, list]:
    """(fit, probe, check) samples: disjoint when there are enough, else overlapping."""
    fit = samples[:FIT_SAMPLES]
    rest = samples[FIT_SAMPLES:]
    if len(rest) < 2 * MIN_HELD_OUT:
        probe = rest[:NOISE_SAMPLES] if len(rest) >= MIN_HELD_OUT else fit[:NOISE_SAMPLES]
        return fit, probe, rest if len(rest) >= MIN_HELD_OUT else fit
    probe = rest[:min(NOISE_SAMPLES, len(rest) // 2)]
    return fit, probe, rest[len(probe):len(probe) + CHECK_SAMPLES]


def _patch_data(lay: Layer, envs: list[dict], rng) -> PatchData:
    """The layer's input patches (sampled output positions) on the fit samples."""
    xs = [e[op.inputs[0].name] for op in lay.ops for e in envs]
    if lay.op.kind == "Conv":
        out = lay.op.output.type
        positions = len(xs) * out.numel // out.shape[1]
        per = max(PATCHES // len(xs), 1)
        patches = np.concatenate([conv_patches(x, lay.w.shape, lay.op.attrs, per, rng)
                                  for x in xs])
        moment = sum(channel_moment(x) for x in xs) / len(xs)
        return PatchData(patches, moment, positions)
    rows = []
    per = max(PATCHES // len(xs), 1)
    for x in xs:
        a = x.T if lay.op.kind == "Gemm" and lay.op.attrs["transA"] else x
        r = a.reshape(-1, a.shape[-1]).astype(np.float64)
        rows.append(r[rng.choice(len(r), per, replace=False)] if len(r) > per else r)
    rows = np.concatenate(rows)
    return PatchData(rows[:, :, None], rows.T @ rows / len(rows), len(rows))


def _factors(lay: Layer, level: int):
    if lay.factorizer is None:
        lay.factorizer = Factorizer(lay.method, lay.w, lay.bias, lay.data)
    return lay.factorizer.factors(lay.levels[level])


# ---- the rewrite ----------------------------------------------------------------------------------

@dataclass
class Parts:
    """A decomposed layer in the new graph: its last ops (re-fitted later, one per op of the
    layer) with the values they read and the original results they stand for."""
    layer: Layer
    lasts: list[tuple[Op, str, str]]


def _build(graph: Graph, chosen: dict, factors: dict) -> tuple[Graph, list[Parts]]:
    """A copy of `graph` with the chosen layers replaced by their factors."""
    dec = graph.clone()
    index = {op: i for i, op in enumerate(graph.ops)}
    todo = [(lay, [dec.ops[index[op]] for op in lay.ops]) for lay in chosen]
    parts = []
    for lay, ops in todo:
        params = _factor_params(dec, lay.op, factors[(id(lay), chosen[lay])])
        lasts = []
        for op in ops:
            name = op.output.name
            new_ops = _factor_ops(dec, op, params)
            if replace(dec, op, new_ops, [new_ops[-1].output]):
                lasts.append((new_ops[-1], new_ops[-1].inputs[0].name, name))
        parts.append(Parts(lay, lasts))
    dec.remove_unused_params()
    return dec, parts


def _factor_params(graph: Graph, op: Op, f) -> dict:
    """The factors as weights of the graph, in the layout each factor op reads (shared by
    every op of the layer)."""
    base = op.name or op.output.name

    def param(suffix, data):
        return graph.add_param(graph.fresh_name(f"{base}_{suffix}"), _flushed(data))

    p = {"method": f.method,
         "bias": param("bias", f.bias) if f.bias is not None else None}
    if op.kind == "Conv":
        nd = f.first.ndim - 2
        p["first"] = param("reduce_w" if f.method == "tucker2" else "v_w", f.first)
        if f.core is not None:
            p["core"] = param("core_w", f.core)
        p["last"] = param("expand_w" if f.method == "tucker2" else "u_w",
                          f.last.reshape(f.last.shape + (1,) * nd))
    else:
        p["first"] = param("v_w", f.first.reshape(f.first.shape[0], -1).T)
        p["last"] = param("u_w", f.last.T)
    return p


def _flushed(data: np.ndarray) -> np.ndarray:
    """float32 weights with subnormal values set to 0: eigenvectors of a layer with dead
    channels hold values like 1e-40, and every multiply-add with a subnormal operand takes a
    microcode assist on x86 (a 1x1 conv of PP-OCRv4 rec ran 50x slower)."""
    a = np.ascontiguousarray(data, dtype=np.float32)
    return np.where(np.abs(a) < np.finfo(np.float32).tiny, np.float32(0), a)


def _factor_ops(graph: Graph, op: Op, p: dict) -> list[Op]:
    base = op.name or op.output.name
    x = op.inputs[0]
    bias = [p["bias"]] if p["bias"] is not None else []

    def named(suffix):
        return [graph.fresh_name(f"{op.output.name}_{suffix}")]

    if op.kind == "Conv":
        a = op.attrs
        nd = len(a["kernel_shape"])
        ones = [1] * nd
        point = {"kernel_shape": ones, "strides": ones, "dilations": ones, "pads": [0] * 2 * nd}
        window = {k: a[k] for k in ("kernel_shape", "strides", "dilations", "pads")}
        if p["method"] == "svd":
            first = build_op("Conv", [x, p["first"]], window, name=f"{base}/svd_v",
                             out_names=named("v"))
            last = build_op("Conv", [first.output, p["last"]] + bias, point,
                            name=f"{base}/svd_u", out_names=named("u"))
            return [first, last]
        reduce = build_op("Conv", [x, p["first"]], point, name=f"{base}/reduce",
                          out_names=named("reduce"))
        core = build_op("Conv", [reduce.output, p["core"]], window, name=f"{base}/core",
                        out_names=named("core"))
        expand = build_op("Conv", [core.output, p["last"]] + bias, point,
                          name=f"{base}/expand", out_names=named("expand"))
        return [reduce, core, expand]
    if op.kind == "Gemm":
        first = build_op("Gemm", [x, p["first"]], {"transA": op.attrs["transA"]},
                         name=f"{base}/svd_v", out_names=named("v"))
        last = build_op("Gemm", [first.output, p["last"]] + bias, {},
                        name=f"{base}/svd_u", out_names=named("u"))
        return [first, last]
    first = build_op("MatMul", [x, p["first"]], name=f"{base}/svd_v", out_names=named("v"))
    last = build_op("MatMul", [first.output, p["last"]], name=f"{base}/svd_u",
                    out_names=named("u"))
    if not bias:
        return [first, last]
    add = build_op("Add", [last.output, p["bias"]], name=f"{base}/svd_bias",
                   out_names=named("bias"))
    return [first, last, add]


def _refit_and_check(dec: Graph, parts: list[Parts], ctx, fit, envs, check,
                     check_outs) -> float:
    """Re-fit every decomposed layer's last factor on the decomposed graph's own inputs to
    it (asymmetric reconstruction); keep the re-fit when the held-out SQNR improves. Returns
    the SQNR on the check samples."""
    sqnr = _sqnr(_runner(dec, ctx)(check), check_outs)
    run = _runner(dec, ctx, keep_all=True)
    zs = {z: [] for p in parts for _, z, _ in p.lasts}
    for feeds in fit:
        _, env = run(feeds)
        for name in zs:
            zs[name].append(env[name])
    old = []
    rng = np.random.default_rng(1)
    for p in parts:
        if not p.lasts:
            continue
        first_last = p.lasts[0][0]
        y = _rows([e[want] for _, _, want in p.lasts for e in envs], p.layer.op)
        z = _rows([v for _, name, _ in p.lasts for v in zs[name]], p.layer.op)
        pick = rng.choice(len(y), 4 * PATCHES, replace=False) if len(y) > 4 * PATCHES \
            else slice(None)
        last_w, bias_v = _last_weight(first_last), _bias_value(first_last)
        u, b = refit_last(z[pick], y[pick], bias_v is not None)
        old.append((last_w, last_w.data, bias_v, None if bias_v is None else bias_v.data))
        last_w.data = _as_last(p.layer.op, u, last_w.type.shape)
        if bias_v is not None:
            bias_v.data = _flushed(b.reshape(bias_v.type.shape))
    refit = _sqnr(_runner(dec, ctx)(check), check_outs)
    if refit >= sqnr:
        return refit
    for w, wd, b, bd in old:
        w.data = wd
        if b is not None:
            b.data = bd
    return sqnr


def _last_weight(op: Op):
    return op.inputs[0].producer.inputs[1] if op.kind == "Add" else op.inputs[1]


def _bias_value(op: Op):
    if op.kind == "Add":
        return op.inputs[1]
    return op.inputs[2] if len(op.inputs) > 2 else None


def _as_last(op: Op, u: np.ndarray, shape) -> np.ndarray:
    """U[M, r] as the last factor op stores it (1x1 conv [M, r, 1..]; Gemm/MatMul [r, M])."""
    data = u if op.kind == "Conv" else u.T
    return _flushed(data.reshape(shape))


def _rows(values: list[np.ndarray], op: Op) -> np.ndarray:
    """Channel vectors of a layer's values: [positions, channels] (channels on axis 1 for a
    conv, the last axis otherwise)."""
    if op.kind == "Conv":
        return np.concatenate([np.moveaxis(v, 1, -1).reshape(-1, v.shape[1]) for v in values])
    return np.concatenate([v.reshape(-1, v.shape[-1]) for v in values])


# ---- measurements ---------------------------------------------------------------------------------

def _samples(ctx) -> list | None:
    return getattr(ctx, "calibration", None) if ctx is not None else None


def _lanes(ctx) -> int:
    target = getattr(ctx, "target", None)
    return max(target.lanes("f32"), 4) if target is not None else 8


def _runner(graph: Graph, ctx, keep_all: bool = False):
    """feeds (or a list of feeds) -> outputs [or (outputs, every value)] (_graph_runner)."""
    one = graph_runner(graph, ctx, outputs_only=not keep_all)
    return lambda feeds: [one(f) for f in feeds] if isinstance(feeds, list) else one(feeds)


def _sqnr(runs: list, want: list) -> float:
    sig = sum(float(np.sum(np.square(w.astype(np.float64)))) for ws in want for w in ws)
    err = sum(float(np.sum(np.square(g.astype(np.float64) - w.astype(np.float64))))
              for gs, ws in zip(runs, want) for g, w in zip(gs, ws))
    return 10 * math.log10(max(sig, 1e-30) / max(err, 1e-30))


def _output_noise(graph, ctx, layers, factors, feeds, want) -> dict:
    """(layer id, level) -> summed squared output error with that layer alone decomposed
    (its factors' single weight swapped into the compiled model)."""
    if getattr(ctx, "runner", None) is not None:
        from edgecc.backends.tvm.build import CompiledGraph
        g = fused(graph)
        run = CompiledGraph(g, ctx.runner).run
    else:
        g, run = graph, _runner(graph, ctx)
    params = {p.name: p for p in g.params}
    noise = {}
    for lay in layers:
        wv = params[lay.op.inputs[1].name]
        original = wv.data
        for j in lay.levels:
            wv.data = _as_stored(lay, factors[(id(lay), j)].effective(), original)
            err = 0.0
            for f, outs in zip(feeds, want):
                err += sum(float(np.sum(np.square(a.astype(np.float64) - b)))
                           for a, b in zip(run(f), outs))
            noise[(id(lay), j)] = err
        wv.data = original
    return noise


def _as_stored(lay: Layer, w_eff: np.ndarray, original: np.ndarray) -> np.ndarray:
    """W_eff ([M, C, *k] / [N, K]) in the layout the op stores its weight."""
    op = lay.op
    if op.kind == "Gemm":
        b = (w_eff / op.attrs["alpha"]).T                     # [K, N]
        w_eff = b.T if op.attrs["transB"] else b
    elif op.kind == "MatMul":
        w_eff = w_eff.T
    return np.ascontiguousarray(w_eff.reshape(original.shape), dtype=original.dtype)


def _select(layers, saved, noise, allowed, flops_goal) -> dict:
    """Greedy knapsack: layer -> level. Moves a layer to a lower rank while the summed output
    error stays within `allowed`, best time saved per error first."""
    chosen: dict = {}
    used, removed = 0.0, 0
    while True:
        best = None
        for lay in layers:
            cur = chosen.get(lay)
            t0 = saved[(id(lay), cur)] if cur is not None else 0.0
            n0 = noise[(id(lay), cur)] if cur is not None else 0.0
            for j in lay.levels:
                t, n = saved[(id(lay), j)], noise[(id(lay), j)]
                if t <= t0 or used - n0 + n > allowed:
                    continue
                gain = (t - t0) / max(n - n0, 1e-30 * allowed + 1e-300)
                if best is None or gain > best[0]:
                    best = (gain, lay, j, n - n0)
        if best is None:
            return chosen
        _, lay, j, dn = best
        before = lay.flops - lay.factor_flops(lay.levels[chosen[lay]]) if lay in chosen else 0
        chosen[lay] = j
        used += dn
        removed += lay.flops - lay.factor_flops(lay.levels[j]) - before
        if flops_goal and removed >= flops_goal:
            return chosen


# ---- the report ------------------------------------------------------------------------------------

def _summary(chosen, sqnr) -> dict:
    flops = sum(lay.flops - lay.factor_flops(lay.levels[j]) for lay, j in chosen.items())
    params = sum(int(lay.w.size - lay.factor_params(lay.levels[j])) * 4
                 for lay, j in chosen.items())
    return {"layers": len(chosen), "flops_saved": int(flops), "params_saved": int(params),
            "sqnr_db": None if sqnr is None else round(float(sqnr), 2)}


def _publish(ctx, results: dict, layers=(), chosen=None, refused=()) -> None:
    chosen = chosen or {}
    detail = []
    for lay in layers:
        j = chosen.get(lay)
        entry = {"node": lay.describe(), "method": lay.method if j is not None else "kept",
                 "ranks": list(lay.levels[j]) if j is not None else None,
                 "flops_before": lay.flops,
                 "flops_after": lay.factor_flops(lay.levels[j]) if j is not None else lay.flops,
                 "sqnr_db": lay.sqnr_db.get(j) if j is not None else None}
        if j is None:
            entry["why"] = lay.why or "its factors would break the accuracy budget"
        detail.append(entry)
    for op, why in refused:
        detail.append({"node": op.name, "method": "kept", "ranks": None,
                       "flops_before": int(count_flops(op)), "flops_after": int(count_flops(op)),
                       "sqnr_db": None, "why": why})
    results["layers_detail"] = detail
    if ctx is None:
        return
    if hasattr(ctx, "results"):
        ctx.results["decompose"] = results
    stream = getattr(ctx, "stream", None)
    if stream is not None:
        print(f"decompose: {results['layers']} layer(s) factored, "
              f"{results['flops_saved'] / 1e6:.1f} of {results['conv_gemm_flops'] / 1e6:.1f} "
              f"conv/gemm MFLOPs removed"
              + (f", output SQNR {results['sqnr_db']} dB" if results["sqnr_db"] is not None
                 else ""), file=stream)
        for d in detail:
            if d["ranks"] is not None:
                alone = f", alone {d['sqnr_db']} dB" if d["sqnr_db"] is not None else ""
                print(f"  {d['node']}: {d['method']} ranks {d['ranks']} "
                      f"{d['flops_before'] / 1e6:.1f} -> {d['flops_after'] / 1e6:.1f} "
                      f"MFLOPs{alone}", file=stream)
