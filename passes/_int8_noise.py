"""Where quantize-int8's error comes from, measured on the model's outputs, and which ops to
keep in float to meet the accuracy budget at the least cost in float work.

A noise source is a value stored in int8 (its rounding and clipping) or the int8 weights of
a convolution / matrix product. One float graph holds every source behind a switch:

    v' = v + m_v * (dequantize(quantize(v)) - v)      W' = W + m_W * (dequantize(quantize(W)) - W)

with each m a scalar graph input, so one compilation measures them all: the outputs' squared
deviation with only m_s = 1 is the source's noise power N_s on the calibration samples.
Sources add up (checked against all switches on: the ratio is reported), so the noise of a
choice of float ops is the sum over the sources it keeps. The selection keeps in float, one
at a time, the op that removes the most noise per unit of work it moves to float (its
multiply-adds, or its elements), until the estimate meets the budget.
"""
from __future__ import annotations

import numpy as np

from edgecc.ir import Graph, TensorType, Value
from edgecc.ops import build_op, count_flops, has_trait
from edgecc.quant import dequantize, params_for_range, quantize_weights, \
    symmetric_weight_params

from ._int8_rewrite import Decision, contraction_weights, decide

NOISE_SAMPLES = 8
NOISE_RUNS = 1000         # switched-graph runs at most: fewer samples for many sources


def weight_axis(op) -> int:
    """The output-channel axis of the weight operand as stored (Conv W[M, ..], MatMul B[K, N],
    Gemm B[K, N] or [N, K] with transB)."""
    if op.kind == "Gemm":
        return 0 if op.attrs["transB"] else 1
    return 0 if op.kind == "Conv" else 1


def switched_graph(src: Graph, d: Decision, act: str, bits: int, weights=None):
    """(graph with every noise source of `d` behind a switch input, [(source, switch name)])
    where a source is ("value", value name) or ("weights", op name)."""
    g = Graph(src.name + "_noise", list(src.inputs), [], [], list(src.outputs))
    env = {v.name: v for v in list(src.inputs) + list(src.params)}
    sources: list[tuple[tuple[str, str], str]] = []
    taken = {v.name for v in src.values()}

    def fresh(base):
        name, k = base, 1
        while name in taken:
            name, k = f"{base}_{k}", k + 1
        taken.add(name)
        return name

    def switch(kind, what):
        m = Value(fresh(f"switch_{len(sources)}"), TensorType("f32", (1,)))
        g.inputs.append(m)
        sources.append(((kind, what), m.name))
        return m

    def emit(kind, ins, attrs=None, name=None):
        op = build_op(kind, ins, attrs or {}, name=fresh(name or kind.lower()),
                      out_names=[fresh((name or kind.lower()) + "_out")])
        g.ops.append(op)
        return op.output

    def perturbed(v: Value, noise: np.ndarray, kind: str, what: str) -> Value:
        """v + m * noise (noise a constant of v's shape)."""
        m = switch(kind, what)
        delta = Value(fresh(f"{what}_delta"), TensorType.of(noise), data=noise)
        return emit("Add", [v, emit("Mul", [delta, m])], name=f"{what}_switched")

    def fake_quantized(v: Value) -> Value:
        lo, hi = d.groups.range(v.name)
        p = params_for_range(lo, hi, act)
        q = emit("QuantizeLinear", [v], {"scale": list(p.scale), "zero_point":
                                         list(p.zero_point), "to": act})
        diff = emit("Sub", [emit("DequantizeLinear", [q]), v])
        m = switch("value", v.name)
        return emit("Add", [v, emit("Mul", [diff, m])], name=f"{v.name}_switched")

    for v in src.inputs:
        if v.name in d.noisy:
            env[v.name] = fake_quantized(v)
    for op in src.ops:
        ins = [None if v is None else env[v.name] for v in op.inputs]
        if d.int8(op) and contraction_weights(op) is not None:
            w = op.inputs[1]
            axis = weight_axis(op)
            wp = symmetric_weight_params(w.data, axis, bits)
            wq = dequantize(quantize_weights(w.data, wp, bits), wp)
            ins[1] = perturbed(w, (wq - w.data).astype(np.float32), "weights", op.name)
            if weights and op.name in weights:          # the alternative rounding
                alt = stored_weights(op, *weights[op.name])
                ins[1] = perturbed(ins[1], (alt - w.data).astype(np.float32), "weights_alt",
                                   op.name)
        new = build_op(op.kind, ins, dict(op.attrs), name=op.name,
                       out_names=[v.name for v in op.outputs])
        g.ops.append(new)
        for v, nv in zip(op.outputs, new.outputs):
            env[v.name] = fake_quantized(nv) if v.name in d.noisy else nv
    g.outputs = [env[v.name] for v in src.outputs]
    seen, params = set(), []
    for v in [v for op in g.ops for v in op.inputs]:
        if v is not None and v.data is not None and id(v) not in seen:
            seen.add(id(v))
            params.append(v)
    g.params = params
    return g, sources


def stored_weights(op, q: np.ndarray, params) -> np.ndarray:
    """int8 weights in contraction_weights' layout, dequantized back to the op's own weight
    operand (Gemm: transB and alpha undone)."""
    w = dequantize(q, params)
    if op.kind == "Gemm":
        w = w / np.float32(op.attrs["alpha"])
        if op.attrs["transB"]:
            w = w.T
    return np.asarray(w, np.float32)


def measure(src: Graph, d: Decision, act: str, bits: int, samples, runner_of, weights=None):
    """({source: noise power}, signal power, additivity, weights kept) on up to NOISE_SAMPLES
    samples: additivity is the noise with every switch on over the sum of the single ones.
    `weights` {op name: (int8, params)} is an alternative to rounding to nearest: each layer
    keeps the one that disturbs the outputs less (least layer-output error on the calibration
    inputs is not always least model-output error)."""
    g, sources = switched_graph(src, d, act, bits, weights)
    run = runner_of(g)
    off = {m: np.zeros(1, np.float32) for _, m in sources}
    samples = samples[:max(1, min(NOISE_SAMPLES, NOISE_RUNS // (len(sources) + 2)))]
    base = [run({**s, **off}) for s in samples]
    signal = sum(float(np.sum(np.asarray(y, np.float64) ** 2)) for outs in base for y in outs)
    noise = {}
    for src_id, m in sources:
        total = 0.0
        for s, ref in zip(samples, base):
            outs = run({**s, **off, m: np.ones(1, np.float32)})
            total += sum(float(np.sum((np.asarray(a, np.float64) - b) ** 2))
                         for a, b in zip(outs, ref))
        noise[src_id] = total
    kept_weights = {}
    shared: dict[int, list[str]] = {}           # ops reading one weight decide together
    for name, wq in (weights or {}).items():
        shared.setdefault(id(wq), []).append(name)
    for names in shared.values():
        alt = [noise.pop(("weights_alt", n), None) for n in names]
        if any(a is None for a in alt):
            continue
        if sum(alt) < sum(noise.get(("weights", n), np.inf) for n in names):
            for n, a in zip(names, alt):
                noise[("weights", n)] = a
                kept_weights[n] = weights[n]

    def chosen(kind, name):              # the switches of the roundings kept
        if kind == "weights":
            return name not in kept_weights
        return kind != "weights_alt" or name in kept_weights
    on = {m: np.full(1, float(chosen(k, w)), np.float32) for (k, w), m in sources}
    all_on = sum(float(np.sum((np.asarray(a, np.float64) - b) ** 2))
                 for s, ref in zip(samples, base) for a, b in zip(run({**s, **on}), ref))
    additivity = all_on / max(sum(noise.values()), 1e-30)
    return noise, signal, additivity, kept_weights


def estimated_noise(d: Decision, src: Graph, noise: dict) -> float:
    total = sum(noise.get(("value", v), 0.0) for v in d.noisy)
    total += sum(noise.get(("weights", op.name), 0.0) for op in src.ops
                 if d.int8(op) and contraction_weights(op) is not None)
    return total


def work(op) -> int:
    """What running `op` in float instead costs: its multiply-adds, else its elements."""
    if has_trait(op, "contraction"):
        return count_flops(op) // 2
    return sum(v.type.numel for v in op.outputs)


SHORTLIST = 24


def select_float(src: Graph, ranges, noise: dict, budget: float, kept: set[str]) -> set[str]:
    """Grow `kept` (ops left in float) until the estimated noise is within `budget`: at each
    step the op whose floating removes the most estimated noise per unit of work it moves to
    float, among the SHORTLIST ops carrying the most noise (their weights and their result)
    per unit of work."""
    kept = set(kept)
    ops = {op.name: op for op in src.ops}
    d = decide(src, ranges, kept)
    cur = estimated_noise(d, src, noise)
    while cur > budget:
        def density(name):
            op = ops[name]
            result = (d.absorbed.get(name) or op).output.name
            own = noise.get(("weights", name), 0.0) + noise.get(("value", result), 0.0)
            own += sum(noise.get(("value", v.name), 0.0) for v in op.inputs
                       if v is not None and v.data is None)
            return own / max(work(op), 1)
        shortlist = sorted((n for n, int8 in d.int8_ops.items() if int8 and n not in kept),
                           key=density, reverse=True)[:SHORTLIST]
        best, best_ratio, best_noise = None, 0.0, cur
        for name in shortlist:
            e = estimated_noise(decide(src, ranges, kept | {name}), src, noise)
            if cur - e > 0 and (cur - e) / max(work(ops[name]), 1) > best_ratio:
                best, best_ratio, best_noise = name, (cur - e) / max(work(ops[name]), 1), e
        if best is None:                  # no single op helps alone: the densest goes
            if not shortlist:
                break
            best = shortlist[0]
            best_noise = estimated_noise(decide(src, ranges, kept | {best}), src, noise)
        kept.add(best)
        d = decide(src, ranges, kept)
        cur = best_noise
    return kept
