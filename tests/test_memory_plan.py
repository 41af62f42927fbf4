"""Memory planner: strategies on hand intervals, property tests of the checker, liveness on small
graphs (views, in-place, workspace, Fused), memory-aware ordering, and whole models."""
import os
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecc.backends.memory.alloc import (ALIGN, STRATEGIES, Buffer, Plan, PlanCheckError,
                                          arena_of, best_fit_by_start, check_plan,
                                          first_fit_by_start, greedy_by_breadth, greedy_by_size,
                                          live_bytes, lower_bound, plan_buffers, squeaky_wheel)
from edgecc.backends.memory.liveness import analyze, liveness
from edgecc.backends.memory.order import candidate_orders, choose_order
from edgecc.backends.memory.plan import enforce_max_arena, plan_graph
from edgecc.errors import ResourceError
from edgecc.builder import GraphBuilder
from edgecc.ir import Graph, TensorType, Value
from edgecc.ops import build_op
from tests.targets import AVX512


def plan_of(buffers, offsets, name="t"):
    return Plan(offsets, arena_of(buffers, offsets), lower_bound(buffers),
                sum(b.asize for b in buffers), name)


# ---- strategies on hand intervals ----------------------------------------------------------

# A and B start together, C needs 128 bytes at t=1 while B (long-lived) is still there.
HAND = [Buffer("A", 64, 0, 0), Buffer("B", 64, 0, 2), Buffer("C", 128, 1, 1)]


def test_lower_bound_and_live_bytes():
    assert live_bytes(HAND) == [128, 192, 64]
    assert lower_bound(HAND) == 192
    assert lower_bound([]) == 0


def test_greedy_by_size_hits_bound_where_start_order_fragments():
    # size order: C@0, then A (not live with C) @0, then B above both
    assert greedy_by_size(HAND) == {"C": 0, "A": 0, "B": 128}
    # start order: A@0, B@64, then C cannot fit under B (gap 64 < 128): pushed above
    assert first_fit_by_start(HAND) == {"A": 0, "B": 64, "C": 128}
    assert best_fit_by_start(HAND) == {"A": 0, "B": 64, "C": 128}
    assert arena_of(HAND, greedy_by_size(HAND)) == 192
    assert arena_of(HAND, first_fit_by_start(HAND)) == 256


def test_greedy_by_breadth_places_widest_kernel_first():
    # t=1 is widest (C+B): C@0, B@128; then A at t=0 fits in the gap under B
    assert greedy_by_breadth(HAND) == {"C": 0, "B": 128, "A": 0}


def test_first_fit_takes_lowest_gap_best_fit_the_tightest():
    # t=0 stacks S1 [0,128) a [128,192) b [192,256) c [256,320); S1 and b die at t=0, so Z
    # (64 bytes, t=1..2) sees holes [0,128) and [192,256): first fit takes 0, best fit 192
    bufs = [Buffer("S1", 128, 0, 0), Buffer("a", 64, 0, 3), Buffer("b", 64, 0, 0),
            Buffer("c", 64, 0, 3), Buffer("Z", 64, 1, 2)]
    ff, bf = first_fit_by_start(bufs), best_fit_by_start(bufs)
    assert ff == {"S1": 0, "a": 128, "b": 192, "c": 256, "Z": 0}
    assert bf == dict(ff, Z=192)


def test_squeaky_wheel_repairs_greedy_by_size():
    bufs = [Buffer("a", 384, 2, 2), Buffer("b", 320, 3, 6), Buffer("c", 320, 2, 5),
            Buffer("d", 256, 3, 3)]
    assert lower_bound(bufs) == 896
    assert arena_of(bufs, greedy_by_size(bufs)) == 960      # d lands above c
    assert arena_of(bufs, squeaky_wheel(bufs)) == 896


def test_plan_buffers_keeps_smallest_and_is_deterministic():
    bufs = [Buffer("a", 384, 2, 2), Buffer("b", 320, 3, 6), Buffer("c", 320, 2, 5),
            Buffer("d", 256, 3, 3)]
    p = plan_buffers(bufs)
    sizes = {n: arena_of(bufs, f(bufs)) for n, f in STRATEGIES.items()}
    assert p.arena_bytes == min(sizes.values()) == 896
    assert p.strategy == next(n for n in STRATEGIES if sizes[n] == 896)   # first winner
    assert plan_buffers(list(reversed(bufs))).offsets == p.offsets
    check_plan(bufs, p)


def test_alignment_and_zero_sized_buffers():
    bufs = [Buffer("x", 1, 0, 1), Buffer("y", 65, 1, 2), Buffer("z", 0, 0, 2)]
    p = plan_buffers(bufs)
    assert all(off % ALIGN == 0 for off in p.offsets.values())
    assert p.lower_bound_bytes == 64 + 128 and p.arena_bytes == 192
    assert p.naive_bytes == 192
    check_plan(bufs, p)
    assert plan_buffers([]).arena_bytes == 0


@pytest.mark.parametrize("offsets, arena, msg", [
    ({"A": 0, "B": 64, "C": 64}, 192, "overlap"),              # B and C live at t=1
    ({"A": 0, "B": 32, "C": 128}, 256, "aligned"),
    ({"A": 0, "B": 64}, 256, "no offset"),
    ({"A": 0, "B": 64, "C": 128}, 192, "exceeds"),
    ({"A": 0, "B": 64, "C": 128}, 300, "arena size 300 is not 64-byte aligned"),
])
def test_check_plan_rejects_bad_plans(offsets, arena, msg):
    with pytest.raises(PlanCheckError, match=msg):
        check_plan(HAND, Plan(offsets, arena, lower_bound(HAND), 256, "bad"))


def test_check_plan_rejects_arena_below_bound():
    with pytest.raises(PlanCheckError, match="below the lower bound"):
        check_plan(HAND, Plan({"A": 0, "B": 64, "C": 0}, 128, 192, 256, "bad"))


# ---- property tests ------------------------------------------------------------------------

@st.composite
def buffer_sets(draw):
    n = draw(st.integers(0, 25))
    bufs = []
    for i in range(n):
        first = draw(st.integers(0, 20))
        bufs.append(Buffer(f"b{i}", draw(st.integers(0, 5000)), first,
                           first + draw(st.integers(0, 8))))
    return bufs


@settings(max_examples=150, deadline=None)
@given(buffer_sets())
def test_every_strategy_yields_a_sound_plan(bufs):
    for name, fn in STRATEGIES.items():
        p = plan_of(bufs, fn(bufs), name)
        check_plan(bufs, p)                      # no overlap, aligned, inside, >= bound


@settings(max_examples=150, deadline=None)
@given(buffer_sets())
def test_best_plan_is_sound_and_near_the_bound(bufs):
    p = plan_buffers(bufs)
    check_plan(bufs, p)
    assert p.lower_bound_bytes <= p.arena_bytes <= 1.5 * p.lower_bound_bytes
    assert p.arena_bytes <= p.naive_bytes


@settings(max_examples=100, deadline=None)
@given(buffer_sets(), st.data())
def test_checker_catches_any_moved_buffer(bufs, data):
    """Moving one buffer onto another simultaneously-live one must be caught."""
    pairs = [(a, b) for a in bufs for b in bufs
             if a is not b and a.overlaps(b) and a.asize and b.asize]
    if not pairs:
        return
    a, b = data.draw(st.sampled_from(pairs))
    p = plan_buffers(bufs)
    offsets = dict(p.offsets, **{a.name: p.offsets[b.name]})
    size = max(p.arena_bytes, offsets[a.name] + a.asize)
    with pytest.raises(PlanCheckError, match="overlap"):
        check_plan(bufs, Plan(offsets, size, p.lower_bound_bytes, p.naive_bytes, "moved"))


def test_best_plan_usually_meets_the_bound_on_random_intervals():
    rng = random.Random(0)
    hits = total = 0
    worst = 1.0
    for _ in range(400):
        bufs = []
        for i in range(rng.randint(1, 25)):
            first = rng.randint(0, 30)
            bufs.append(Buffer(f"b{i}", rng.randint(1, 5000), first,
                               first + rng.choice([0, 1, 3, 10])))
        p = plan_buffers(bufs)
        total += 1
        hits += p.arena_bytes == p.lower_bound_bytes
        worst = max(worst, p.arena_bytes / p.lower_bound_bytes)
    assert hits >= 0.95 * total and worst < 1.25


# ---- liveness on small graphs --------------------------------------------------------------

class G(GraphBuilder):
    """edgecc.builder.GraphBuilder naming results <op name>_out<i> (as build_op does)."""

    def __init__(self):
        super().__init__("t")
        self.g = self.graph

    def op(self, kind, ins, name, **attrs):
        probe = build_op(kind, ins, attrs, name=name)
        outs = self.ops(kind, ins, name, out_names=[v.name for v in probe.outputs], **attrs)
        return outs[0] if len(outs) == 1 else outs

    def param(self, name, shape):               # a random weight of this shape
        return self.rand(name, shape)

    def conv(self, x, cout, name, k=1):
        w = self.param(name + "_w", (cout, x.type.shape[1], k, k))
        return self.op("Conv", [x, w, None], name, pads=[k // 2] * 4)

    def out(self, *vals):
        self.g.outputs = list(vals)
        return self.g


def by_name(bufs):
    return {b.name: b for b in bufs}


def test_chain_buffers_exclude_inputs_params_outputs():
    b = G()
    x = b.input("x", (1, 4, 8, 8))
    a = b.conv(x, 4, "c1")
    r = b.op("Relu", [a], "relu")
    y = b.conv(r, 4, "c2")
    g = b.out(y)
    bufs = by_name(liveness(g))
    assert set(bufs) == {"c1_out0", "relu_out0"}
    assert (bufs["c1_out0"].first, bufs["c1_out0"].last) == (0, 1)
    assert (bufs["relu_out0"].first, bufs["relu_out0"].last) == (1, 2)
    assert bufs["c1_out0"].size == 4 * 4 * 8 * 8


def test_inplace_elementwise_reuses_dying_operand():
    b = G()
    x = b.input("x", (1, 4, 8, 8))
    a = b.conv(x, 4, "c1")
    r = b.op("Relu", [a], "relu")
    y = b.conv(r, 4, "c2")
    g = b.out(y)
    lv = analyze(g, inplace=True)
    assert lv.inplace == {"relu_out0": "c1_out0"}
    assert lv.aliases == {"relu_out0": "c1_out0"}
    assert [(bf.name, bf.first, bf.last) for bf in lv.buffers] == [("c1_out0", 0, 2)]
    gp = plan_graph(g)
    assert gp.location("relu_out0") == gp.location("c1_out0")
    assert gp.arena_bytes == 1024 and gp.naive_bytes == 2048


def test_no_inplace_when_operand_is_still_needed():
    b = G()
    x = b.input("x", (1, 4, 8, 8))
    a = b.conv(x, 4, "c1")
    r = b.op("Relu", [a], "relu")
    s = b.op("Add", [a, r], "add")              # a is read again after the Relu
    y = b.conv(s, 4, "c2")
    lv = analyze(b.out(y), inplace=True)
    assert "relu_out0" not in lv.inplace
    assert lv.inplace == {"add_out0": "c1_out0"}   # a dies at the Add: its result takes a


def test_inplace_with_broadcast_only_into_full_shape_operand():
    b = G()
    x = b.input("x", (1, 4, 8, 8))
    a = b.conv(x, 4, "c1")
    m = b.op("GlobalAveragePool", [a], "gap")      # [1,4,1,1]
    s = b.op("Mul", [m, a], "scale")               # m broadcasts; a has the result's shape
    y = b.conv(s, 4, "c2")
    lv = analyze(b.out(y), inplace=True)
    assert lv.inplace == {"scale_out0": "c1_out0"}


def test_inplace_batchnorm_but_not_softmax():
    b = G()
    x = b.input("x", (1, 4, 8, 8))
    a = b.conv(x, 4, "c1")
    bn = b.op("BatchNormalization", [a] + [b.param(f"bn{i}", (4,)) for i in range(4)], "bn")
    sm = b.op("Softmax", [bn], "sm", axis=1)      # reads a whole row before writing it
    y = b.conv(sm, 4, "c2")
    assert analyze(b.out(y), inplace=True).inplace == {"bn_out0": "c1_out0"}


def test_no_inplace_across_element_sizes_or_shapes():
    b = G()
    x = b.input("x", (1, 4, 8, 8))
    a = b.conv(x, 4, "c1")
    e = b.op("Greater", [a, x], "gt")                            # f32 -> bool
    c = b.op("Cast", [e], "cast", to="f32")                      # bool -> f32
    t = b.op("Transpose", [c], "tr", perm=[0, 1, 3, 2])          # not elementwise
    y = b.conv(t, 4, "c2")
    lv = analyze(b.out(y), inplace=True)
    assert lv.inplace == {}


def test_inplace_same_value_twice_and_never_into_inputs():
    b = G()
    x = b.input("x", (1, 4, 8, 8))
    s = b.op("Mul", [x, x], "sq")                 # x is a graph input: never overwritten
    t = b.op("Add", [s, s], "dbl")                # s dies here, read twice at the same index
    y = b.op("Relu", [t], "relu")
    lv = analyze(b.out(y), inplace=True)
    # and the dying chain finally lives in the graph output relu writes
    assert lv.inplace == {"dbl_out0": "sq_out0", "relu_out0": "dbl_out0"}
    assert lv.external["sq_out0"] == "output" and lv.buffers == []


def test_inplace_into_graph_output_storage():
    # the last elementwise op writes into its dying operand, which therefore lives in the output
    b = G()
    x = b.input("x", (1, 4, 8, 8))
    a = b.conv(x, 4, "c1")
    y = b.op("Sigmoid", [a], "sig")
    gp = plan_graph(b.out(y))
    assert gp.inplace == {"sig_out0": "c1_out0"}
    assert gp.location("c1_out0") == ("output", "sig_out0", 0)
    assert gp.buffers == [] and gp.arena_bytes == 0


def test_views_alias_and_extend_lifetime():
    b = G()
    x = b.input("x", (1, 4, 8, 8))
    a = b.conv(x, 4, "c1")                                   # 0
    f = b.op("Reshape", [a], "rs", shape=[1, 4, 64])         # 1
    c = b.conv(x, 4, "c2")                                   # 2
    u = b.op("Unsqueeze", [f], "uq", axes=[0])               # 3
    s = b.op("Squeeze", [u], "sq", axes=[0])                 # 4
    r = b.op("Reshape", [s], "back", shape=[1, 4, 8, 8])     # 5
    y = b.op("Add", [r, c], "add")                           # 6
    g = b.out(y)
    lv = analyze(g)
    assert lv.aliases == {n: "c1_out0" for n in ("rs_out0", "uq_out0", "sq_out0", "back_out0")}
    bufs = by_name(lv.buffers)
    assert set(bufs) == {"c1_out0", "c2_out0"}
    assert (bufs["c1_out0"].first, bufs["c1_out0"].last) == (0, 6)
    gp = plan_graph(g, reorder=False, inplace=False)
    assert all(gp.is_noop(op) for op in g.ops if op.kind in ("Reshape", "Squeeze", "Unsqueeze"))
    assert gp.location("back_out0").offset == gp.location("c1_out0").offset
    assert gp.location("c2_out0").offset != gp.location("c1_out0").offset
    # without views every result is its own buffer
    assert len(liveness(g, views=False)) == 6


def test_view_of_graph_input_or_param_has_no_arena_buffer():
    b = G()
    x = b.input("x", (1, 4, 8, 8))
    w = b.param("w", (4, 4, 1, 1))
    fx = b.op("Flatten", [x], "fl", axis=1)
    rx = b.op("Reshape", [fx], "rs", shape=[1, 4, 8, 8])
    w2 = b.op("Identity", [w], "idw")
    y = b.op("Conv", [rx, w2, None], "conv")
    g = b.out(y)
    gp = plan_graph(g)
    assert gp.buffers == []
    assert gp.location("rs_out0") == ("input", "x", 0)
    assert gp.location("idw_out0") == ("param", "w", 0)
    assert gp.external == {"x": "input", "fl_out0": "input", "rs_out0": "input",
                           "w": "param", "idw_out0": "param", "conv_out0": "output"}


def test_view_producing_output_stores_its_source_there_unless_already_external():
    b = G()
    x = b.input("x", (1, 4, 8, 8))
    a = b.conv(x, 4, "c1")
    y1 = b.op("Flatten", [a], "fl1", axis=1)      # a lives in the output y1
    y2 = b.op("Flatten", [a], "fl2", axis=1)      # second output of the same data: a copy
    y3 = b.op("Flatten", [x], "fl3", axis=1)      # view of an input as an output: a copy
    g = b.out(y1, y2, y3)
    gp = plan_graph(g)
    assert gp.location("c1_out0") == ("output", "fl1_out0", 0)
    noop = {op.name: gp.is_noop(op) for op in g.ops}
    assert noop == {"c1": False, "fl1": True, "fl2": False, "fl3": False}
    assert gp.arena_bytes == 0


def test_workspace_lives_only_during_its_kernel():
    b = G()
    x = b.input("x", (1, 4, 8, 8))
    a = b.conv(x, 4, "c1")
    c = b.conv(a, 4, "c2")
    y = b.conv(c, 4, "c3")
    g = b.out(y)
    lv = analyze(g, workspace={1: 1000, g.ops[2]: 100})
    ws = {bf.name: (bf.first, bf.last, bf.size) for bf in lv.buffers if bf.name.startswith("w")}
    assert ws == {"workspace#1:c2": (1, 1, 1000), "workspace#2:c3": (2, 2, 100)}
    gp = plan_graph(g, workspace={1: 1000, g.ops[2]: 100})
    assert gp.lower_bound_bytes == 1024 + 1024 + 1024    # a, c and c2's scratch at kernel 1
    assert gp.workspace_offset(gp.order.index(g.ops[1])) is not None
    assert gp.workspace_offset(gp.order.index(g.ops[0])) is None


def test_multi_output_and_dead_results():
    b = G()
    x = b.input("x", (1, 4, 8, 8))
    a = b.conv(x, 4, "c1")
    s0, s1 = b.op("Split", [a], "split", axis=1, split=[2, 2])
    y = b.op("Relu", [s0], "relu")                # s1 is never read
    bufs = by_name(liveness(b.out(y)))
    assert (bufs["split_out1"].first, bufs["split_out1"].last) == (1, 1)
    assert (bufs["split_out0"].first, bufs["split_out0"].last) == (1, 2)


def fused_op(kind_chain, x, name):
    """A Fused op applying unary ops in sequence to x."""
    body = Graph(name + "_body", [Value("bx", x.type)])
    cur = body.inputs[0]
    for i, kind in enumerate(kind_chain):
        kind, attrs = kind if isinstance(kind, tuple) else (kind, {})
        op = build_op(kind, [cur], attrs, name=f"{name}_{i}")
        body.ops.append(op)
        cur = op.output
    body.outputs = [cur]
    return build_op("Fused", [x], {"body": body, "kernel": name},
                    name=name)


def test_fused_is_one_kernel_and_inplace_only_if_elementwise():
    b = G()
    x = b.input("x", (1, 4, 8, 8))
    a = b.conv(x, 4, "c1")
    f1 = fused_op(["Relu", "Sigmoid"], a, "ew")
    f2 = fused_op(["Softplus", "Tanh"], f1.output, "ew2")
    b.g.ops += [f1, f2]
    y = b.conv(f2.output, 4, "c2")
    g = b.out(y)
    lv = analyze(g, inplace=True)
    names = {bf.name for bf in lv.buffers}
    assert names == {"c1_out0"}                  # body values never reach the arena
    assert lv.inplace == {"ew_out0": "c1_out0", "ew2_out0": "ew_out0"}

    b = G()
    x = b.input("x", (1, 4, 8, 8))
    a = b.conv(x, 4, "c1")
    f = fused_op(["Relu", ("Transpose", {"perm": [0, 1, 3, 2]})], a, "notew")  # same shape
    b.g.ops.append(f)
    y = b.conv(f.output, 4, "c2")
    assert analyze(b.out(y), inplace=True).inplace == {}


def test_concat_elimination_places_operands_as_slices():
    b = G()
    x = b.input("x", (1, 4, 8, 8))
    a = b.conv(x, 4, "c1")                        # 1024 B each
    c = b.conv(x, 4, "c2")
    cat = b.op("Concat", [a, c], "cat", axis=1)   # slices [0,1024) and [1024,2048)
    d = b.conv(x, 4, "c3")
    cat2 = b.op("Concat", [cat, d], "cat2", axis=1)   # nests: cat is cat2's first slice
    y = b.conv(cat2, 4, "head")
    g = b.out(y)
    lv = analyze(g, concat=True)
    assert [(bf.name, bf.size, bf.first, bf.last) for bf in lv.buffers] == \
        [("cat2_out0", 3072, 0, 5)]               # the outer result, live from c1 on
    assert lv.sub_offsets == {"c2_out0": 1024, "c3_out0": 2048}
    assert {lv.root(n) for n in ("c1_out0", "c2_out0", "cat_out0", "c3_out0")} == {"cat2_out0"}
    gp = plan_graph(g, reorder=False)
    assert gp.is_noop(g.ops[2]) and gp.is_noop(g.ops[4])
    base = gp.location("cat2_out0").offset
    assert [gp.location(n).offset - base for n in ("c1_out0", "c2_out0", "c3_out0")] == \
        [0, 1024, 2048]
    # without elimination: four separate buffers, the Concats copy
    off = plan_graph(g, reorder=False, concat=False)
    assert not off.is_noop(g.ops[2]) and len(off.buffers) == 5


@pytest.mark.parametrize("case", ["axis", "input", "twice", "placed"])
def test_concat_elimination_refused(case):
    b = G()
    x = b.input("x", (1, 4, 8, 8))
    a = b.conv(x, 4, "c1")
    c = b.conv(x, 4, "c2")
    if case == "axis":            # H slices of [1,4,16,8] are strided, not contiguous
        cat = b.op("Concat", [a, c], "cat", axis=2)
    elif case == "input":         # a graph input cannot be moved into the arena
        cat = b.op("Concat", [a, x], "cat", axis=1)
    elif case == "twice":         # one value cannot sit in two slices
        cat = b.op("Concat", [a, a], "cat", axis=1)
    else:                         # a already placed in cat0
        b.op("Concat", [a, c], "cat0", axis=1)
        cat = b.op("Concat", [a, c], "cat", axis=1)
    y = b.conv(cat, 4, "head")
    g = b.out(y)
    gp = plan_graph(g, reorder=False)
    cat_op = next(op for op in g.ops if op.name == "cat")
    assert not gp.is_noop(cat_op)


def test_no_inplace_into_or_out_of_a_concat_slice():
    b = G()
    x = b.input("x", (1, 4, 8, 8))
    a = b.conv(x, 4, "c1")
    r = b.op("Relu", [a], "relu")                 # a dies here, but r is a slice of cat
    c = b.conv(x, 4, "c2")
    cat = b.op("Concat", [r, c], "cat", axis=1)
    s = b.op("Sigmoid", [cat], "sig")             # the whole concat dies: may be overwritten
    y = b.conv(s, 4, "head")
    lv = analyze(b.out(y), inplace=True, concat=True)
    assert lv.inplace == {"sig_out0": "cat_out0"}
    assert lv.sub_offsets == {"c2_out0": 1024}


def conv_sum_relu(x, w, skip, name):
    """Fused conv(x, w) + skip -> relu, as the fusion pass builds it."""
    body = Graph(name + "_body", [Value("bx", x.type), Value("bw", w.type),
                                  Value("bs", skip.type)])
    bx, bw, bs = body.inputs
    conv = build_op("Conv", [bx, bw, None], {"pads": [1, 1, 1, 1]}, name=name + "_conv")
    add = build_op("Add", [conv.output, bs], name=name + "_add")
    relu = build_op("Relu", [add.output], name=name + "_relu")
    body.ops, body.outputs = [conv, add, relu], [relu.output]
    return build_op("Fused", [x, w, skip], {"body": body, "kernel": "conv_sum_relu"}, name=name)


def test_fused_overwrites_only_elementwise_operands():
    b = G()
    x = b.input("x", (1, 4, 8, 8))
    a = b.conv(x, 4, "c1")
    c = b.conv(a, 4, "c2")                        # a is also the residual
    f = conv_sum_relu(c, b.param("w3", (4, 4, 3, 3)), a, "block")
    b.g.ops.append(f)
    y = b.conv(f.output, 4, "head")
    lv = analyze(b.out(y), inplace=True)
    assert lv.inplace == {"block_out0": "c1_out0"}    # the skip, not the conv input c

    # the same value as conv input and skip: the conv reads neighbours of overwritten elements
    b = G()
    x = b.input("x", (1, 4, 8, 8))
    a = b.conv(x, 4, "c1")
    f = conv_sum_relu(a, b.param("w3", (4, 4, 3, 3)), a, "block")
    b.g.ops.append(f)
    y = b.conv(f.output, 4, "head")
    assert analyze(b.out(y), inplace=True).inplace == {}


def test_order_must_be_topological():
    b = G()
    x = b.input("x", (1, 4, 8, 8))
    a = b.conv(x, 4, "c1")
    y = b.op("Relu", [a], "relu")
    g = b.out(y)
    with pytest.raises(ValueError, match="not topological"):
        analyze(g, list(reversed(g.ops)))
    with pytest.raises(ValueError, match="permutation"):
        analyze(g, g.ops[:1])


# ---- ordering ------------------------------------------------------------------------------

def branchy_graph():
    """Inception-like: 4 branches expand x 8x then reduce; file order runs all expansions
    first, so all four 8x tensors are live at once."""
    b = G()
    x = b.input("x", (1, 4, 8, 8))
    wide = [b.conv(x, 32, f"expand{i}") for i in range(4)]
    narrow = [b.conv(w, 4, f"reduce{i}") for i, w in enumerate(wide)]
    cat = b.op("Concat", narrow, "cat", axis=1)
    y = b.conv(cat, 4, "head")
    return b.out(y)


def is_topological(graph, order):
    seen = set(graph.inputs) | set(graph.params)
    for op in order:
        if any(v is not None and v not in seen for v in op.inputs):
            return False
        seen.update(op.outputs)
    return len(order) == len(graph.ops) and set(map(id, order)) == set(map(id, graph.ops))


def test_choose_order_runs_branches_one_at_a_time():
    g = branchy_graph()
    original = lower_bound(liveness(g))
    assert original == 4 * 8192 + 1024       # at reduce0: four expanded tensors + its result
    order = choose_order(g)
    assert is_topological(g, order)
    assert [op.name for op in order[:4]] == ["expand0", "reduce0", "expand1", "reduce1"]
    better = lower_bound(liveness(g, order))
    assert better == 8192 + 4 * 1024         # at reduce3: one expanded tensor + 4 results
    for o in candidate_orders(g).values():
        assert is_topological(g, o)
    gp = plan_graph(g)
    assert gp.order_name != "original" and gp.arena_bytes == better
    assert plan_graph(g, reorder=False).arena_bytes == original


def test_reordered_graph_computes_the_same_results():
    from edgecc.kernels.executor import run_graph
    g = branchy_graph()
    order = choose_order(g)
    assert [op.name for op in order] != [op.name for op in g.ops]
    h = Graph(g.name, g.inputs, g.params, order, g.outputs)
    feeds = {"x": np.random.default_rng(1).standard_normal((1, 4, 8, 8)).astype(np.float32)}
    for a, b in zip(run_graph(g, feeds), run_graph(h, feeds)):
        np.testing.assert_array_equal(a, b)


# ---- plan_graph, peak, --max-arena ---------------------------------------------------------

def test_plan_graph_fields_and_peak():
    g = branchy_graph()
    gp = plan_graph(g, reorder=False)
    assert len(gp.live_bytes) == len(g.ops)
    assert max(gp.live_bytes) == gp.lower_bound_bytes
    p = gp.peak()
    assert p.bytes == gp.lower_bound_bytes
    assert p.op.name == "reduce0"                      # all four 8x tensors live
    assert [n for n, _ in p.live] == [f"expand{i}_out0" for i in range(4)] + ["reduce0_out0"]
    assert gp.report() == {"arena_bytes": gp.arena_bytes,
                           "arena_lower_bound_bytes": gp.lower_bound_bytes,
                           "naive_bytes": gp.naive_bytes}
    assert gp.naive_bytes == 4 * 8192 + 4 * 1024 + 4096


def test_graph_without_intermediates():
    x = Value("x", TensorType("f32", (1, 4)))
    gp = plan_graph(Graph("passthrough", [x], [], [], [x]))
    assert (gp.arena_bytes, gp.lower_bound_bytes, gp.naive_bytes, gp.live_bytes) == (0, 0, 0, [])
    assert gp.peak().op is None and gp.location("x") == ("input", "x", 0)
    enforce_max_arena(gp, 0)


def test_enforce_max_arena():
    g = branchy_graph()
    gp = plan_graph(g, reorder=False)
    enforce_max_arena(gp, gp.arena_bytes)              # exactly enough: fine
    enforce_max_arena(gp, None)
    with pytest.raises(ResourceError) as e:
        enforce_max_arena(gp, 1000)
    assert e.value.exit_code == 4
    assert e.value.message.startswith(
        f"arena needs {gp.arena_bytes} bytes > max_arena=1000; peak at kernel 'reduce0' "
        "(Conv) with live tensors expand0_out0 (8192 B), expand1_out0 (8192 B), "
        "expand2_out0 (8192 B), expand3_out0 (8192 B), reduce0_out0 (1024 B); ")
    # the advice fits the build: no "-O3" for a build already at -O3
    assert "lower bound of this graph's live tensors" in e.value.message
    assert "opt_level" not in e.value.message
    with pytest.raises(ResourceError, match="try opt_level=3"):
        enforce_max_arena(gp, 1000, opt_level=1)
    from edgecc.errors import FRONT_END
    token = FRONT_END.set("cli")             # the command line spells its flags
    try:
        with pytest.raises(ResourceError, match="> --max-arena 1000;.*try -O3"):
            enforce_max_arena(gp, 1000, opt_level=0)
    finally:
        FRONT_END.reset(token)


# ---- whole models --------------------------------------------------------------------------

MODELS = ("squeezenet", "ppocr_cls", "shufflenet", "resnet50", "inception_v1", "inception_v2",
          "densenet121", "vgg19", "bvlc_alexnet", "zfnet512", "ppocr_det")
FAST = ("squeezenet", "ppocr_cls", "shufflenet")


def import_model(name, level=0):
    """The imported zoo model (weights as shipped: their values do not matter here), after the
    -O<level> pipeline."""
    zoo = pytest.importorskip("edgecc.zoo")
    onnx_import = pytest.importorskip("edgecc.onnx_import")
    path = zoo.source_path(name)
    if not os.path.exists(path):
        pytest.skip(f"{path} not present")
    g = onnx_import.import_onnx(str(path), zoo.default_input_shapes(name))
    if level:
        pm = pytest.importorskip("edgecc.pass_manager")
        g = pm.PassManager(pm.pipeline(level), target=AVX512).run(g)
    return g


@pytest.mark.parametrize("name", [
    n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in MODELS])
def test_model_arena_within_2_percent_of_bound(name):
    g = import_model(name)
    gp = plan_graph(g)
    assert gp.lower_bound_bytes > 0
    assert gp.arena_bytes <= 1.02 * gp.lower_bound_bytes
    assert gp.arena_bytes < gp.naive_bytes
    assert is_topological(g, gp.order)
    # no reuse tricks: every intermediate gets a buffer, bound can only grow
    raw = lower_bound(liveness(g, views=False))
    assert gp.lower_bound_bytes <= raw


@pytest.mark.parametrize("level", [0, 3])
@pytest.mark.parametrize("name", FAST)
def test_model_runs_bit_exact_through_its_plan(name, level):
    """Real graphs (-O3: Fused kernels, in-place into them) through the simulated arena."""
    from edgecc import zoo
    from edgecc.backends.memory.sim import simulate
    from edgecc.kernels.executor import run_graph
    g = import_model(name, level)
    gp = plan_graph(g)
    assert gp.arena_bytes <= 1.02 * gp.lower_bound_bytes
    feeds = zoo.sample_inputs(name)
    for got, want in zip(simulate(g, gp, feeds), run_graph(g, feeds)):
        np.testing.assert_array_equal(got, want)


# ---- the plan runs: simulated arena vs the reference executor ------------------------------

def random_graph(seed: int) -> Graph:
    """A random DAG over [1,C,4,4] tensors: 1x1 convs, elementwise (in-place candidates),
    broadcasts, Concat/Split on channels, view chains, Fused elementwise kernels; graph outputs
    include intermediates and views."""
    rng = random.Random(seed)
    b = G()
    pool = [b.input("x", (1, 4, 4, 4))]
    if rng.random() < 0.5:
        pool.append(b.input("x2", (1, 2, 4, 4)))
    outs = []
    pick = lambda: rng.choice(pool[-6:])          # noqa: E731  (mostly recent values)
    for i in range(rng.randint(3, 14)):
        kind = rng.choice(["conv", "unary", "binary", "bcast", "concat", "split", "view",
                           "transpose", "fused"])
        x = pick()
        c = x.type.shape[1]
        if kind == "conv":
            v = b.conv(x, rng.choice([2, 4, 6]), f"conv{i}")
        elif kind == "unary":
            v = b.op(rng.choice(["Relu", "Sigmoid", "Neg", "Abs"]), [x], f"un{i}")
        elif kind == "binary":
            same = [y for y in pool if y.type.shape == x.type.shape]
            v = b.op(rng.choice(["Add", "Mul", "Sub"]), [x, rng.choice(same)], f"bin{i}")
        elif kind == "bcast":
            m = b.op("GlobalAveragePool", [x], f"gap{i}")
            v = b.op("Mul", [x, m] if rng.random() < 0.5 else [m, x], f"bc{i}")
        elif kind == "concat":
            parts = [x] + [rng.choice(pool) for _ in range(rng.randint(1, 2))]
            v = b.op("Concat", parts, f"cat{i}", axis=1)
        elif kind == "split" and c % 2 == 0:
            v0, v1 = b.op("Split", [x], f"split{i}", axis=1, split=[c // 2, c // 2])
            pool.append(v0)
            v = v1
        elif kind == "view":
            flat = (b.op("Flatten", [x], f"flat{i}", axis=1) if rng.random() < 0.5
                    else b.op("Reshape", [x], f"flat{i}", shape=[1, c * 16]))
            if rng.random() < 0.3:
                outs.append(flat)
            v = b.op("Reshape", [flat], f"unflat{i}", shape=[1, c, 4, 4])
        elif kind == "fused":
            f = fused_op([rng.choice(["Relu", "Sigmoid"]), "Neg"], x, f"fz{i}")
            b.g.ops.append(f)
            v = f.output
        else:
            v = b.op("Transpose", [x], f"tr{i}", perm=[0, 1, 3, 2])
        pool.append(v)
        if rng.random() < 0.15:
            outs.append(v)
    outs.append(pool[-1])
    return b.out(*dict.fromkeys(outs))          # unique, in order


def feeds_for(g, seed=0):
    rng = np.random.default_rng(seed)
    return {v.name: rng.standard_normal(v.type.shape).astype(np.float32) for v in g.inputs}


@settings(max_examples=int(os.environ.get("MEMORY_SIM_EXAMPLES", 60)), deadline=None)
@given(st.integers(0, 10**6), st.booleans(), st.booleans(), st.booleans(), st.booleans())
def test_simulated_arena_matches_reference(seed, inplace, reorder, concat, workspace):
    from edgecc.backends.memory.sim import simulate
    from edgecc.kernels.executor import run_graph
    g = random_graph(seed)
    ws = {i: 64 * (1 + i % 3) for i in range(0, len(g.ops), 2)} if workspace else None
    gp = plan_graph(g, workspace=ws, inplace=inplace, reorder=reorder, concat=concat)
    assert is_topological(g, gp.order)
    assert all(is_topological(g, o) for o in candidate_orders(g).values())
    assert all(gp.location(v).offset == 0 for v in gp.external)   # slices only in the arena
    feeds = feeds_for(g, seed)
    for got, want in zip(simulate(g, gp, feeds), run_graph(g, feeds)):
        np.testing.assert_array_equal(got, want)


def test_simulation_catches_a_broken_plan():
    """The oracle is not vacuous: shortening a lifetime corrupts the results."""
    from edgecc.backends.memory.sim import simulate
    from edgecc.kernels.executor import run_graph
    g = branchy_graph()
    gp = plan_graph(g, reorder=False)
    feeds = feeds_for(g)
    want = run_graph(g, feeds)
    np.testing.assert_array_equal(simulate(g, gp, feeds)[0], want[0])
    # pretend reduce0's result dies right away: it is poisoned before the Concat reads it
    gp.buffers = [Buffer(bf.name, bf.size, bf.first, bf.first) if bf.name == "reduce0_out0"
                  else bf for bf in gp.buffers]
    assert not np.array_equal(simulate(g, gp, feeds)[0], want[0])
