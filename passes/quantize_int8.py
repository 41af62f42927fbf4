"""quantize-int8: post-training int8 quantization from calibration samples (--int8 --calib).

1. Calibrate: run the float graph on every sample (compiled for the machine it runs on when
   the context offers one, else the reference executor) and collect each value's range
   (compiler/calibrate.py: min/max plus a reservoir; method minmax, percentile, mse or
   entropy).
2. Decide and rewrite (passes/_int8_rewrite.py): convolutions and matrix products with
   constant weights become QConv / QMatMul (weights i8 per output channel, a following Relu or
   Clip absorbed as the integer clamp), residual Add / Sub / Mul QAdd / QMul, average pools
   their Q forms, other elementwise functions of an int8 value a 256-entry QLookup; ops that
   only move values run on the int8 values; everything else stays float. Activations are u8
   on x86 (VNNI's u8 x s8 dot product) and i8 on arm64 (sdot).
3. Accuracy by design (passes/_int8_noise.py): every source of int8 error (each value stored
   in int8, each layer's int8 weights) is measured on the model's outputs; the ops that
   remove the most error per unit of work moved to float are kept in float until the
   estimated output SQNR meets `min_sqnr`; the int8 graph is then run and its SQNR on the
   calibration samples checked, keeping more in float while it falls short.

The report section int8 (report.json, CONTRACT.md) lists every layer with its SQNR and
whether it runs in int8.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgecc.calibrate import METHODS, Collector, choose_range, pooled_sqnr
from edgecc.errors import UsageError
from edgecc.ir import Graph
from edgecc.ops import count_flops, has_trait
from edgecc.pass_registry import register_pass
from edgecc.quant import dequantize

from ._graph_runner import graph_runner, replace_contents
from ._int8_noise import measure, select_float
from ._int8_rewrite import decide, rewrite
from ._int8_weights import rounded_weights

FIT_SAMPLES = 8           # calibration samples weights, biases and noise are fitted on
MIN_HELD_OUT = 4
CHECK_SAMPLES = 8         # the next ones: the accuracy budget is checked on them (held out
                          # from the fit when there are enough; else the fit samples)
MAX_ROUNDS = 7           # int8 graphs built and checked at most
CLIFF_OPS, CLIFF_DB = 6, 6.0


@register_pass
@dataclass(frozen=True)
class QuantizeInt8:
    name = "quantize-int8"
    tolerance = 1.0          # its promise is the SQNR budget on the calibration samples
    method: str = "mse"
    min_sqnr: float = 30.0
    activations: str = "auto"        # u8, i8, or auto: by the target's dot-product unit
    weight_bits: int = 8
    weight_rounding: str = "output"  # output: least layer-output error (_int8_weights); nearest

    def _checked(self, graph: Graph, q: Graph, ctx, fit, check, float_envs, check_outs):
        """(runs on the fit samples, output SQNR on the check samples) of the int8 graph,
        with empirical bias correction when it helps on the check samples."""
        run_q = graph_runner(q, ctx)          # (biases are operands: corrected without recompiling)
        runs = [run_q(f) for f in fit]
        sqnr = _sqnr([run_q(f) for f in check] if check is not fit else runs, check_outs)
        biases = {p.name: p.data for p in q.params}
        if correct_biases(graph, q, runs, float_envs):
            corrected = [run_q(f) for f in check]
            if _sqnr(corrected, check_outs) > sqnr:
                return [run_q(f) for f in fit], _sqnr(corrected, check_outs)
            for p in q.params:
                p.data = biases[p.name]
        return runs, sqnr

    def run(self, graph: Graph, ctx) -> bool:
        if self.method not in METHODS:
            raise UsageError(f"quantize-int8: method '{self.method}' is not one of "
                             f"{', '.join(METHODS)}")
        samples = ctx.calibration if ctx is not None else None
        if not samples:
            raise UsageError("quantize-int8 needs calibration samples (--calib PATH)")
        if self.weight_rounding not in ("output", "nearest"):
            raise UsageError(f"quantize-int8: weight_rounding '{self.weight_rounding}' must be "
                             f"output or nearest")
        act = self.activations
        if act == "auto":
            act = "i8" if ctx.target is not None and ctx.target.is_arm else "u8"
        if act not in ("u8", "i8"):
            raise UsageError(f"quantize-int8: activations '{act}' must be u8, i8 or auto")

        # 1. calibration statistics (and the float outputs the budget is measured against)
        names = [v.name for op in graph.ops for v in op.outputs if v.type.dtype == "f32"]
        names += [v.name for v in graph.inputs if v.type.dtype == "f32"]
        run_float = graph_runner(graph, ctx)
        coll = Collector(names, len(samples))
        float_outs, float_envs = [], []
        for i, feeds in enumerate(samples):
            outs, env = run_float(feeds)
            coll.add(env)
            float_outs.append(outs)
            if i < FIT_SAMPLES:
                float_envs.append({n: env[n] for n in names if n in env})
        ranges = {n: choose_range(st, self.method) for n, st in coll.stats.items()}
        steps = {n: (hi - lo) / 255 for n, (lo, hi) in ranges.items()}
        weights = rounded_weights(graph, float_envs, steps, self.weight_bits) \
            if self.weight_rounding == "output" else None

        fit = samples[:FIT_SAMPLES]
        held_out = len(samples) - FIT_SAMPLES >= MIN_HELD_OUT
        check = samples[FIT_SAMPLES:FIT_SAMPLES + CHECK_SAMPLES] if held_out else fit
        check_outs = float_outs[FIT_SAMPLES:FIT_SAMPLES + CHECK_SAMPLES] if held_out else \
            float_outs[:FIT_SAMPLES]

        # 2-3. the cheapest float set meeting the budget, checked on the real int8 graph
        everything = decide(graph, ranges, set())
        noise, signal, additivity, weights = measure(
            graph, everything, act, self.weight_bits, samples,
            lambda g: graph_runner(g, ctx, outputs_only=True), weights)
        # the estimate's target is searched: raised by the shortfall while the real SQNR misses
        # the budget, then bisected between the highest miss and the lowest pass (the lowest
        # passing target keeps the most in int8)
        # An op whose real int8 form costs far more than its estimate shows as a cliff: a
        # lower target that floats a few ops fewer than a passing one fails badly; those few
        # ops then stay float in every later round.
        target, low, high = self.min_sqnr, None, None
        rounds, best, last, forced = [], None, None, set()
        for _ in range(MAX_ROUNDS):
            kept = select_float(graph, ranges, noise, signal / 10 ** (target / 10), forced)
            d = decide(graph, ranges, kept)
            q, qname = rewrite(graph, d, act, self.weight_bits, weights)
            runs, sqnr = self._checked(graph, q, ctx, fit, check, float_envs, check_outs)
            rounds.append({"target_db": round(target, 2), "sqnr_db": round(sqnr, 2),
                           "kept_float": len(kept)})
            last = (sqnr, kept, d, q, qname, runs)
            if sqnr >= self.min_sqnr:
                high = target
                if best is None or len(kept) < len(best[1]):
                    best = last
            else:
                low = target
                cliff = best[1] - kept if best is not None else set()
                if 0 < len(cliff) <= CLIFF_OPS and best[0] - sqnr > CLIFF_DB and \
                        not cliff <= forced:
                    forced |= cliff
                    low = None           # the estimate changed: search the target again
            if not any(d.int8_ops.values()) or (sqnr >= self.min_sqnr and not kept) or \
                    (low is not None and high is not None and high - low < 1.0):
                break
            if low is not None and high is not None:
                target = (low + high) / 2
            elif high is None:           # estimate was optimistic: aim higher
                target += max(self.min_sqnr - sqnr, 1.0)
            else:                        # pessimistic: aim lower, keep more in int8
                target -= max(sqnr - self.min_sqnr, 1.0)
        sqnr, kept, d, q, qname, runs = best if best is not None else last
        layer_sqnr = _layer_sqnr(graph, d, runs, float_envs, q, qname)
        macs = sum(count_flops(op) // 2 for op in graph.ops if has_trait(op, "contraction"))
        kinds = {op.name: op.kind for op in graph.ops}
        why = _float_reasons({op.name: op for op in graph.ops}, d, kept, noise, signal)
        replace_contents(graph, q)
        ctx.results["int8"] = _report(graph, d, kinds, layer_sqnr, sqnr, self.method,
                                      len(samples), kept, macs, additivity, rounds, why,
                                      self.min_sqnr)
        floats = [n for n, int8 in d.int8_ops.items() if not int8]
        ctx.remark(self.name, f"{sum(d.int8_ops.values())} ops in int8, {len(floats)} float;"
                              f" output SQNR {sqnr:.1f} dB on {len(runs)} calibration "
                              f"sample(s) (budget {self.min_sqnr:g} dB)")
        for n in sorted(floats, key=lambda n: (n not in kept, n))[:12]:
            ctx.remark(self.name, f"  float: {n} ({kinds.get(n, '?')})"
                                  f" {why[n]}")
        if len(floats) > 12:
            ctx.remark(self.name, f"  ... and {len(floats) - 12} more (report.json int8.layers)")
        return True


def correct_biases(src: Graph, q: Graph, runs, float_envs) -> bool:
    """Empirical bias correction: the mean error of each QConv / QMatMul accumulator per output
    channel (its int8 input and weights, dequantized, against the float graph's
    pre-activation result on the evaluation samples) is taken out of its int32 bias.
    Returns whether any bias changed."""
    from edgecc.kernels import run_op
    from edgecc.ops import build_op
    float_ops = {op.name: op for op in src.ops}
    changed = False
    for op in q.ops:
        if op.kind not in ("QConv", "QMatMul") or op.name not in float_ops:
            continue
        fop = float_ops[op.name]
        x, w, b = op.inputs[0], op.inputs[1], op.inputs[2]
        sx = x.type.quant.scale[0]
        sw = np.asarray(w.type.quant.scale, np.float64)
        wd = dequantize(w.data, w.type.quant)
        errs, count = 0.0, 0
        for (_, env), fenv in zip(runs, float_envs):
            ref = fenv.get(fop.output.name)
            if ref is None or x.name not in env:
                continue
            xd = dequantize(env[x.name], x.type.quant)
            if op.kind == "QConv":
                probe = build_op("Conv", [_typed(x, xd), _typed(w, wd)],
                                 {k: op.attrs[k] for k in ("kernel_shape", "strides", "pads",
                                                           "dilations", "group")})
                acc = run_op(probe, [xd, wd])[0].astype(np.float64)
                axes = tuple(i for i in range(acc.ndim) if i != 1)
                bias_real = (b.data.astype(np.float64) * sx * sw).reshape(
                    (1, -1) + (1,) * (acc.ndim - 2))
            else:
                acc = xd.reshape(-1, xd.shape[-1]).astype(np.float64) @ wd.astype(np.float64)
                axes = (0,)
                bias_real = b.data.astype(np.float64) * sx * sw
                ref = ref.reshape(-1, ref.shape[-1])
            diff = (acc + bias_real) - ref.astype(np.float64)
            errs = errs + diff.sum(axis=axes).reshape(-1)
            count += diff.size // diff.shape[1 if op.kind == "QConv" else -1]
        if count == 0:
            continue
        shift = np.rint(np.asarray(errs) / count / (sx * sw))
        if np.any(shift):
            new = np.clip(b.data.astype(np.int64) - shift.astype(np.int64), -2 ** 31,
                          2 ** 31 - 1).astype(np.int32)
            b.data = new
            changed = True
    return changed


def _typed(v, array):
    from edgecc.ir import TensorType, Value
    return Value(v.name, TensorType("f32", tuple(array.shape)), data=None)


def _sqnr(runs, float_outs) -> float:
    return pooled_sqnr((r, g) for (outs, _), ref in zip(runs, float_outs)
                       for r, g in zip(ref, outs))


def _db(signal: float, noise: float) -> float:
    return math.inf if noise <= 0 else 10 * math.log10(max(signal, 1e-30) / noise)




def _layer_sqnr(src: Graph, d, runs, float_envs, q: Graph, qname) -> dict[str, float]:
    """Per op with an int8 form: the SQNR of its result in the int8 graph (dequantized where
    it is int8) against the float graph's, on the evaluation samples."""
    qtypes = {v.name: v.type for v in q.values()}
    out = {}
    for op in src.ops:
        if op.name not in d.int8_ops:
            continue
        a = d.absorbed.get(op.name)
        name = (a or op).output.name
        qn = qname.get(name)
        pairs = []
        for (_, env), fenv in zip(runs, float_envs):
            if name not in fenv:
                continue
            if qn is not None and qn in env:
                pairs.append((fenv[name], dequantize(env[qn], qtypes[qn].quant)))
            elif name in env:
                pairs.append((fenv[name], env[name]))
        if pairs:
            out[op.name] = pooled_sqnr(pairs)
    return out


def _dbv(x: float):
    """A dB figure for JSON: finite rounded, an exact match as 999."""
    return round(x, 2) if math.isfinite(x) else (999.0 if x > 0 else -999.0)


def _float_reasons(ops: dict, d, kept: set[str], noise: dict, signal: float) -> dict:
    """Why each op stayed float: the output SQNR its int8 form alone would allow, or that it
    has no int8 form between int8 neighbours."""
    why = {}
    for name, int8 in d.int8_ops.items():
        if int8:
            continue
        if name in kept and name in ops:
            op = ops[name]
            own = noise.get(("weights", name), 0.0) + sum(
                noise.get(("value", v.name), 0.0) for v in op.outputs)
            why[name] = (f"kept for accuracy: int8 alone would limit the output to "
                         f"{_db(signal, own):.1f} dB" if own > 0 else "kept for accuracy")
        else:
            why[name] = "no int8 form here (computes on real values)"
    return why


def _report(graph_after: Graph, d, kinds, layer_sqnr, sqnr, method, samples, kept,
            macs_total, additivity, rounds, why, budget) -> dict:
    """The int8 section of report.json (CONTRACT.md)."""
    macs_q = sum(count_flops(op) // 2 for op in graph_after.ops
                 if has_trait(op, "contraction") and has_trait(op, "quantized"))
    layers = []
    for name, int8 in d.int8_ops.items():
        layers.append({"node": name, "op": kinds[name],
                       "sqnr_db": _dbv(layer_sqnr[name]) if name in layer_sqnr else None,
                       "int8": bool(int8), **({} if int8 else {"why": why[name]})})
    return {"min_sqnr_db": budget,"quantized_ops": sum(1 for v in d.int8_ops.values() if v),
            "float_ops": sum(1 for v in d.int8_ops.values() if not v),
            "quantized_macs_fraction": round(macs_q / macs_total, 4) if macs_total else 0.0,
            "sqnr_db": _dbv(sqnr), "calib_method": method, "calib_samples": samples,
            "layers": layers, "kept_float": sorted(kept),
            "noise_additivity": round(additivity, 3), "rounds": rounds}
