"""Random valid ONNX graphs of the ops edge models use (NNSmith-style: every op is chosen
among those whose operand shapes allow it, so the graph is valid by construction).

    model, feeds = random_model(seed)           # the same seed always gives the same graph

3-25 nodes over Conv in all its forms (groups, depthwise, strides, dilations, asymmetric
pads, auto_pad, no bias), ConvTranspose, BatchNormalization, activations (incl. the
x*sigmoid(x) and hard-swish spellings of exported models), broadcasting arithmetic,
Max/AveragePool with pads and ceil_mode, global pools, Concat/Split/Slice/Reshape/Flatten/
Transpose, Gemm/MatMul, Resize in every mode, Softmax, ReduceMean, Pad, DepthToSpace; awkward
shapes (channels 1, 3, 5, 17, 33; spatial 1-40; batch 2), several outputs including inner
values and outputs that other nodes also read.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from onnx import TensorProto, helper, numpy_helper

CHANNELS = (1, 2, 3, 4, 5, 8, 16, 17, 32, 33)
OPSET = 17


@dataclass
class _Builder:
    rng: np.random.Generator
    nodes: list = field(default_factory=list)
    inits: list = field(default_factory=list)
    shapes: dict = field(default_factory=dict)     # value name -> shape (float32 values)
    readers: dict = field(default_factory=dict)    # value name -> times read
    n: int = 0

    def name(self, base: str) -> str:
        self.n += 1
        return f"{base}{self.n}"

    def const(self, array, base="c") -> str:
        name = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def weight(self, shape, scale=1.0) -> str:
        return self.const((self.rng.standard_normal(shape) * scale).astype(np.float32), "w")

    def node(self, op, inputs, shape, **attrs) -> str:
        out = self.name(op.lower()[:8])
        self.nodes.append(helper.make_node(op, inputs, [out], name=self.name(op), **attrs))
        for i in inputs:
            if i in self.shapes:
                self.readers[i] = self.readers.get(i, 0) + 1
        self.shapes[out] = tuple(int(d) for d in shape)
        return out

    def pick(self, values):
        return values[int(self.rng.integers(len(values)))]

    def choice(self, options):
        return options[int(self.rng.integers(len(options)))]


# ---- op generators: each takes the builder and a value, returns a new value or None ----------

def _conv(b: _Builder, x):
    if len(b.shapes[x]) != 4:
        return None
    n, c, h, w = b.shapes[x]
    r = b.rng
    kind = b.choice(["dense", "dense", "depthwise", "grouped", "pointwise"])
    if kind == "depthwise":
        group, cout = c, c * b.choice([1, 1, 2])
    elif kind == "grouped":
        divisors = [g for g in range(2, c + 1) if c % g == 0]
        if not divisors:
            return None
        group = b.choice(divisors)
        cout = group * b.choice([1, 2, 3])
    else:
        group, cout = 1, b.choice(CHANNELS)
    k = 1 if kind == "pointwise" else b.choice([1, 2, 3, 3, 5, 7])
    kh, kw = k, b.choice([k, k, 1, 3]) if k > 1 else 1
    stride = [b.choice([1, 1, 2, 3]) for _ in range(2)]
    dil = [b.choice([1, 1, 1, 2]) for _ in range(2)]
    attrs = {"group": group, "strides": stride, "dilations": dil,
             "kernel_shape": [kh, kw]}
    if r.random() < 0.2:
        attrs["auto_pad"] = b.choice(["SAME_UPPER", "SAME_LOWER", "VALID"])
        if attrs["auto_pad"] != "VALID":
            attrs["dilations"] = dil = [1, 1]     # onnxruntime: no dilated SAME padding
        pads = None
    else:
        pads = [int(r.integers(0, max(kh, 1))), int(r.integers(0, max(kw, 1))),
                int(r.integers(0, max(kh, 1))), int(r.integers(0, max(kw, 1)))]
        attrs["pads"] = pads
    out_hw = []
    for i, (size, kk) in enumerate(zip((h, w), (kh, kw))):
        span = dil[i] * (kk - 1) + 1
        if pads is None:
            if attrs["auto_pad"] == "VALID":
                o = (size - span) // stride[i] + 1
            else:
                o = -(-size // stride[i])
        else:
            o = (size + pads[i] + pads[i + 2] - span) // stride[i] + 1
        out_hw.append(o)
    if min(out_hw) < 1:
        return None
    wt = b.weight((cout, c // group, kh, kw), math.sqrt(2.0 / (c // group * kh * kw)))
    ins = [x, wt] + ([b.weight((cout,), 0.1)] if r.random() < 0.7 else [])
    return b.node("Conv", ins, (n, cout, *out_hw), **attrs)


def _conv_transpose(b: _Builder, x):
    if len(b.shapes[x]) != 4 or max(b.shapes[x][2:]) > 20:
        return None
    n, c, h, w = b.shapes[x]
    cout = b.choice(CHANNELS[:6])
    k = b.choice([2, 3, 4])
    s = b.choice([1, 2, 2])
    p = int(b.rng.integers(0, k))
    op = int(b.rng.integers(0, s))
    out = [s * (d - 1) + op + k - 2 * p for d in (h, w)]
    if min(out) < 1:
        return None
    wt = b.weight((c, cout, k, k), math.sqrt(1.0 / (c * k * k)))
    return b.node("ConvTranspose", [x, wt, b.weight((cout,), 0.1)], (n, cout, *out),
                  kernel_shape=[k, k], strides=[s, s], pads=[p] * 4, output_padding=[op, op])


def _batchnorm(b: _Builder, x):
    shape = b.shapes[x]
    if len(shape) < 2:
        return None
    c = shape[1]
    r = b.rng
    ins = [x, b.const(r.uniform(0.5, 1.5, c).astype(np.float32)),
           b.const(r.uniform(-0.5, 0.5, c).astype(np.float32)),
           b.const(r.uniform(-0.5, 0.5, c).astype(np.float32)),
           b.const(r.uniform(0.5, 2.0, c).astype(np.float32))]
    return b.node("BatchNormalization", ins, shape, epsilon=float(b.choice([1e-5, 1e-3])))


def _activation(b: _Builder, x):
    shape = b.shapes[x]
    kind = b.choice(["Relu", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip6", "HardSigmoid",
                     "HardSwish", "Elu", "Softplus", "swish", "hswish_relu6", "hswish_hsig",
                     "Abs", "Neg", "Exp"])
    if kind == "LeakyRelu":
        return b.node(kind, [x], shape, alpha=0.1)
    if kind == "Clip6":
        return b.node("Clip", [x, b.const(np.float32(0)), b.const(np.float32(6))], shape)
    if kind == "HardSigmoid":
        return b.node(kind, [x], shape, alpha=float(1 / 6), beta=0.5)
    if kind == "Exp":                                 # keep it tame: exp(tanh(x))
        return b.node("Exp", [b.node("Tanh", [x], shape)], shape)
    if kind == "swish":                               # x * sigmoid(x), as PyTorch exports SiLU
        return b.node("Mul", [x, b.node("Sigmoid", [x], shape)], shape)
    if kind == "hswish_relu6":                        # x * relu6(x + 3) / 6
        t = b.node("Add", [x, b.const(np.float32(3))], shape)
        t = b.node("Clip", [t, b.const(np.float32(0)), b.const(np.float32(6))], shape)
        return b.node("Div", [b.node("Mul", [x, t], shape), b.const(np.float32(6))], shape)
    if kind == "hswish_hsig":                         # x * hardsigmoid(x)
        return b.node("Mul", [x, b.node("HardSigmoid", [x], shape, alpha=float(1 / 6),
                                        beta=0.5)], shape)
    return b.node(kind, [x], shape)


def _broadcast_shape(b: _Builder, shape):
    """A shape that broadcasts to `shape` (never enlarging it)."""
    forms = [(), (1,), shape[-1:], shape]
    if len(shape) == 4:
        forms += [(shape[1], 1, 1), (1, shape[1], 1, 1), (1, 1, 1, shape[3])]
    return b.choice(forms)


def _arith(b: _Builder, x):
    shape = b.shapes[x]
    op = b.choice(["Add", "Add", "Sub", "Mul", "Mul", "Div"])
    same = [v for v, s in b.shapes.items() if s == shape and v != x]
    if op != "Div" and same and b.rng.random() < 0.5:
        y = b.pick(same)
        return b.node(op, [x, y] if b.rng.random() < 0.5 else [y, x], shape)
    cshape = _broadcast_shape(b, shape)
    c = b.rng.uniform(0.5, 1.5, cshape) * b.choice([1, -1])
    cname = b.const(np.asarray(c, np.float32))
    return b.node(op, [x, cname] if op == "Div" or b.rng.random() < 0.6 else [cname, x],
                  shape)


def _pool(b: _Builder, x):
    shape = b.shapes[x]
    if len(shape) != 4:
        return None
    n, c, h, w = shape
    kind = b.choice(["MaxPool", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"])
    if kind.startswith("Global"):
        return b.node(kind, [x], (n, c, 1, 1))
    k = [b.choice([1, 2, 3, 3, 5]) for _ in range(2)]
    s = [b.choice([1, 2, 2, 3]) for _ in range(2)]
    pads = [int(b.rng.integers(0, kk)) for kk in k] * 2
    ceil = int(b.rng.random() < 0.3)
    attrs = {"kernel_shape": k, "strides": s, "pads": pads, "ceil_mode": ceil}
    if kind == "AveragePool":
        attrs["count_include_pad"] = int(b.rng.random() < 0.5)
    out = []
    for i, size in enumerate((h, w)):
        span = size + pads[i] + pads[i + 2] - k[i]
        o = (-(-span // s[i]) if ceil else span // s[i]) + 1
        if ceil and (o - 1) * s[i] >= size + pads[i]:
            return None      # ONNX's shape inference and its runtimes disagree on this size
        out.append(o)
    if min(out) < 1:
        return None
    return b.node(kind, [x], (n, c, *out), **attrs)


def _concat(b: _Builder, x):
    shape = b.shapes[x]
    if len(shape) < 2:
        return None
    axis = 1 if len(shape) == 4 else len(shape) - 1
    peers = [v for v, s in b.shapes.items()
             if len(s) == len(shape) and all(a == c for i, (a, c) in enumerate(zip(s, shape))
                                             if i != axis)]
    ys = [b.pick(peers) for _ in range(int(b.rng.integers(1, 3)))]
    out = list(shape)
    out[axis] = sum(b.shapes[v][axis] for v in [x] + ys)
    return b.node("Concat", [x] + ys, out, axis=axis if b.rng.random() < 0.7 else
                  axis - len(shape))


def _split(b: _Builder, x):
    shape = b.shapes[x]
    axis = 1 if len(shape) == 4 else len(shape) - 1
    if shape[axis] < 2:
        return None
    cut = int(b.rng.integers(1, shape[axis]))
    sizes = [cut, shape[axis] - cut]
    outs = [b.name("split"), b.name("split")]
    b.nodes.append(helper.make_node("Split", [x, b.const(np.array(sizes, np.int64))], outs,
                                    name=b.name("Split"), axis=axis))
    b.readers[x] = b.readers.get(x, 0) + 1
    for o, size in zip(outs, sizes):
        s = list(shape)
        s[axis] = size
        b.shapes[o] = tuple(s)
    return outs[int(b.rng.integers(2))]


def _slice(b: _Builder, x):
    shape = b.shapes[x]
    axes = [a for a in range(1, len(shape)) if shape[a] > 1] or [len(shape) - 1]
    axis = b.pick(axes)
    d = shape[axis]
    step = b.choice([1, 1, 2, -1, -2])
    if step > 0:
        start, end = int(b.rng.integers(0, d)), int(b.rng.integers(1, d + 3))
        length = max(0, -(-(min(end, d) - start) // step))
    else:
        start, end = int(b.rng.integers(0, d)) , int(b.rng.integers(-d - 2, 0))
        lo = max(end + d, -1) if end >= -d else -1
        length = max(0, -(-(start - lo) // -step))
    if length < 1:
        return None
    out = list(shape)
    out[axis] = length
    return b.node("Slice", [x, b.const(np.array([start], np.int64)),
                            b.const(np.array([end], np.int64)),
                            b.const(np.array([axis], np.int64)),
                            b.const(np.array([step], np.int64))], out)


def _reshape(b: _Builder, x):
    shape = b.shapes[x]
    kind = b.choice(["flatten", "transpose", "merge_hw", "transpose"])
    if kind == "flatten" and len(shape) >= 2:
        return b.node("Flatten", [x], (shape[0], int(np.prod(shape[1:]))), axis=1)
    if kind == "transpose":
        perm = list(b.rng.permutation(len(shape)))
        return b.node("Transpose", [x], [shape[p] for p in perm], perm=[int(p) for p in perm])
    if len(shape) == 4:
        new = [shape[0], shape[1], shape[2] * shape[3]]
        return b.node("Reshape", [x, b.const(np.array([0, 0, -1], np.int64))], new)
    return None


def _dense(b: _Builder, x):
    shape = b.shapes[x]
    if len(shape) == 4 and b.rng.random() < 0.5:      # a CNN's classifier head
        pooled = b.node(b.choice(["GlobalAveragePool", "GlobalMaxPool"]), [x],
                        (shape[0], shape[1], 1, 1))
        x = b.node("Flatten", [pooled], (shape[0], shape[1]), axis=1)
        shape = b.shapes[x]
    if len(shape) == 2:
        m, k = shape
        nout = b.choice([1, 3, 10, 17, 32])
        if b.rng.random() < 0.5:
            tb = int(b.rng.random() < 0.5)
            wt = b.weight((nout, k) if tb else (k, nout), 1 / math.sqrt(k))
            bias = [b.weight(b.choice([(nout,), (1,), (1, nout)]), 0.1)] if \
                b.rng.random() < 0.7 else []
            return b.node("Gemm", [x, wt] + bias, (m, nout), transB=tb,
                          alpha=float(b.choice([1.0, 1.0, 0.5])))
        return b.node("MatMul", [x, b.weight((k, nout), 1 / math.sqrt(k))], (m, nout))
    if len(shape) >= 3:                                # batched: [..., K] x [K, N]
        k = shape[-1]
        nout = b.choice([1, 4, 8, 17])
        return b.node("MatMul", [x, b.weight((k, nout), 1 / math.sqrt(k))],
                      (*shape[:-1], nout))
    return None


def _resize(b: _Builder, x):
    shape = b.shapes[x]
    if len(shape) != 4 or max(shape[2:]) > 24:
        return None
    mode = b.choice(["nearest", "nearest", "linear", "cubic"])
    ctm = b.choice(["half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel",
                    "half_pixel_symmetric"])
    attrs = {"mode": mode, "coordinate_transformation_mode": ctm}
    if mode == "nearest":
        attrs["nearest_mode"] = b.choice(["round_prefer_floor", "round_prefer_ceil", "floor",
                                          "ceil"])
    if b.rng.random() < 0.5:
        scales = [1.0, 1.0] + [b.choice([0.5, 1.5, 2.0, 2.0, 3.0]) for _ in range(2)]
        out = [int(math.floor(d * s)) for d, s in zip(shape, scales)]
        if min(out) < 1:
            return None
        ins = [x, "", b.const(np.array(scales, np.float32))]
    else:
        out = list(shape[:2]) + [int(b.rng.integers(1, 33)) for _ in range(2)]
        ins = [x, "", "", b.const(np.array(out, np.int64))]
    return b.node("Resize", ins, out, **attrs)


def _softmax(b: _Builder, x):
    shape = b.shapes[x]
    return b.node(b.choice(["Softmax", "Softmax", "LogSoftmax"]), [x], shape,
                  axis=int(b.rng.integers(-len(shape), len(shape))))


def _reduce(b: _Builder, x):
    shape = b.shapes[x]
    axes = sorted({int(a) for a in b.rng.choice(len(shape), int(b.rng.integers(1, 3)))})
    keep = int(b.rng.random() < 0.7)
    out = [1 if i in axes else d for i, d in enumerate(shape)] if keep else \
        [d for i, d in enumerate(shape) if i not in axes]
    if not out:
        return None
    return b.node("ReduceMean", [x], out, axes=axes, keepdims=keep)


def _pad(b: _Builder, x):
    shape = b.shapes[x]
    if len(shape) != 4:
        return None
    mode = b.choice(["constant", "constant", "reflect", "edge"])
    pads = [0, 0] + [int(b.rng.integers(0, 3)) for _ in range(2)]
    pads += [0, 0] + [int(b.rng.integers(0, 3)) for _ in range(2)]
    if mode == "reflect" and any(p >= d for p, d in zip(pads[2:4] + pads[6:], shape[2:] * 2)):
        return None
    out = [d + pads[i] + pads[i + 4] for i, d in enumerate(shape)]
    ins = [x, b.const(np.array(pads, np.int64))]
    if mode == "constant":
        ins.append(b.const(np.float32(b.choice([0.0, 0.5]))))
    return b.node("Pad", ins, out, mode=mode)


def _depth_to_space(b: _Builder, x):
    shape = b.shapes[x]
    if len(shape) != 4 or shape[1] % 4:
        return None
    n, c, h, w = shape
    return b.node("DepthToSpace", [x], (n, c // 4, h * 2, w * 2), blocksize=2,
                  mode=b.choice(["DCR", "CRD"]))


GENERATORS = [(_conv, 6), (_conv_transpose, 1), (_batchnorm, 2), (_activation, 5), (_arith, 4),
              (_pool, 3), (_concat, 2), (_split, 1), (_slice, 1), (_reshape, 1), (_dense, 2),
              (_resize, 1), (_softmax, 1), (_reduce, 1), (_pad, 1), (_depth_to_space, 1)]
MAX_ELEMENTS = 1 << 17                 # keep every value small: fast to build and to check


def random_model(seed: int, min_nodes: int = 3, max_nodes: int = 25):
    """(onnx.ModelProto, feeds) of graph number `seed`."""
    rng = np.random.default_rng([seed, 2026])
    b = _Builder(rng)
    inputs = []
    for i in range(1 if rng.random() < 0.75 else 2):
        shape = (int(rng.choice([1, 1, 1, 2])), b.choice(CHANNELS),
                 int(rng.choice([1, 2, 3, 5, 7, 8, 13, 16, 24, 40])),
                 int(rng.choice([1, 2, 3, 5, 7, 9, 16, 17, 28, 40])))
        if i and rng.random() < 0.7:
            shape = b.shapes[inputs[0]]                # two inputs that can meet
        name = f"in{i}"
        b.shapes[name] = tuple(shape)
        inputs.append(name)
    target = int(rng.integers(min_nodes, max_nodes + 1))
    weights = np.array([w for _, w in GENERATORS], float)
    tries = 0
    while len(b.nodes) < target and tries < 200:
        tries += 1
        gen = GENERATORS[int(rng.choice(len(GENERATORS), p=weights / weights.sum()))][0]
        recent = list(b.shapes)[-6:]
        x = b.pick(recent)
        before = (len(b.nodes), len(b.inits), dict(b.shapes), dict(b.readers), b.n)
        try:
            y = gen(b, x)
        except (ValueError, ZeroDivisionError):
            y = None
        if y is None or int(np.prod(b.shapes[y])) > MAX_ELEMENTS or min(b.shapes[y]) < 1:
            b.nodes, b.inits = b.nodes[:before[0]], b.inits[:before[1]]
            b.shapes, b.readers, b.n = before[2], before[3], before[4]
    produced = [v for v in b.shapes if v not in inputs]
    if not produced:
        produced = [b.node("Relu", [inputs[0]], b.shapes[inputs[0]])]
    outputs = [produced[-1]]
    for v in produced[:-1]:                            # inner values, read or not
        if rng.random() < 0.15 and len(outputs) < 4:
            outputs.append(v)
    unread = [v for v in produced if v not in b.readers and v not in outputs]
    outputs += unread[:2]                              # dangling results are outputs too
    vi = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, b.shapes[n])  # noqa
    graph = helper.make_graph(b.nodes, f"fuzz{seed}", [vi(i) for i in inputs],
                              [vi(o) for o in outputs], b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    feeds = {i: rng.standard_normal(b.shapes[i]).astype(np.float32) for i in inputs}
    return model, feeds
