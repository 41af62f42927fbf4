"""The text IR (.eir): an exact, readable, round-trippable form of a Graph.

    text = print_graph(graph)                      # print -> parse -> print is the identity
    graph = parse_graph(text, "f.eir", weights)    # every op checked like build_op
    save_module(graph, "out/m.eir")                # + out/m.weights.npz (deterministic bytes)
    graph = load_module("out/m.eir")

The grammar is compiler/textir.lark. Weights are never printed: params are declared by name
and type, and their data comes from the `weights` dict (a .weights.npz beside the file), or
from an inline `= dense<...>` initializer (handy in tests), or, when `weights` is None, from a
deterministic generator seeded by the param's name (floats U(-1,1), ints 1, bools random)
so hand-written files can run numerics. Every error is a ModelError "file:line:col: message".
"""
from __future__ import annotations

import io
import json
import re
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from .dtypes import DTYPES, dtype_to_numpy
from .errors import ModelError, UsageError
from .ir import Graph, Op, QuantParams, TensorType, Value
from .opdef import OpRuleError
from .ops import build_op, get_opdef
from .ops import QUIET_ATTRS
from .ops.layout import Layout

__all__ = ["print_graph", "parse_graph", "save_module", "load_module", "weights_path",
           "format_type"]

# ---- printing -------------------------------------------------------------------------------

_PLAIN = re.compile(r"[A-Za-z0-9_.\-]+\Z")
_GRAPH_ATTR = "body"          # the one attribute printed as a region (Fused's body)


def _name(sigil: str, name: str) -> str:
    """%conv1_w_0, or %"gpu_0/data_0" (JSON-quoted) when the name is not plain."""
    return sigil + (name if _PLAIN.match(name) else json.dumps(name))


def format_type(t: TensorType) -> str:
    s = f"{t.dtype}[{','.join(str(d) for d in t.shape)}]"
    if t.quant is not None:
        q = t.quant
        parts = [f"scale={_fmt_list(float(x) for x in q.scale)}",
                 f"zero_point={_fmt_list(int(x) for x in q.zero_point)}"]
        if q.axis is not None:
            parts.append(f"axis={int(q.axis)}")
        s += "<" + ", ".join(parts) + ">"
    return s


def _fmt_list(items) -> str:
    return "[" + ",".join(_fmt_attr(x) for x in items) + "]"


def _fmt_scalar(x: Any, dtype: str) -> str:
    """One element of a dense tensor: the shortest text that reads back to the same value."""
    if dtype == "bool":
        return "true" if x else "false"
    if dtype in ("f16", "f32"):
        return str(x)                    # numpy's shortest round-tripping repr
    if dtype == "f64":
        return repr(float(x))
    return str(int(x))


def _fmt_dense(a: np.ndarray) -> str:
    t = TensorType.of(a)
    flat = a.reshape(-1)
    body = (_fmt_scalar(flat[0], t.dtype) if a.ndim == 0 else
            "[" + ",".join(_fmt_scalar(x, t.dtype) for x in flat) + "]")
    return f"dense<{format_type(t)}: {body}>"


def _fmt_attr(v: Any) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return repr(float(v))            # repr round-trips exactly, incl. inf/-inf/nan
    if isinstance(v, str):
        return v if v in DTYPES else json.dumps(v)
    if isinstance(v, Layout):
        return json.dumps(str(v))
    if isinstance(v, (list, tuple)):
        return _fmt_list(v)
    if isinstance(v, np.ndarray):
        return _fmt_dense(v)
    if v is None:
        return "none"
    raise TypeError(f"cannot print attribute value {v!r} ({type(v).__name__})")


def _quiet_default(kind: str, key: str, value: Any) -> bool:
    """An edgecc-only attribute of an ONNX op (Conv's `layout`) at its default: not printed,
    so ONNX-shaped graphs print as they always did (the parser fills the default back in)."""
    return key in QUIET_ATTRS.get(kind, ()) and value == get_opdef(kind).attrs[key]


def _fmt_op(op: Op, indent: str, out: list[str]) -> None:
    outs = ", ".join(_name("%", v.name) for v in op.outputs)
    ins = ", ".join("_" if v is None else _name("%", v.name) for v in op.inputs)
    line = f"{indent}{outs} = {op.kind}({ins})"
    plain = {k: v for k, v in op.attrs.items()
             if not isinstance(v, Graph) and not _quiet_default(op.kind, k, v)}
    regions = [k for k, v in op.attrs.items() if isinstance(v, Graph)]
    if regions and regions != [_GRAPH_ATTR]:
        raise TypeError(f"{op.describe()}: only a '{_GRAPH_ATTR}' attribute may hold a graph, "
                        f"got {regions}")
    if plain:
        line += " {" + ", ".join(f"{k}={_fmt_attr(plain[k])}" for k in sorted(plain)) + "}"
    line += " : " + ", ".join(format_type(v.type) for v in op.outputs)
    if op.name:
        line += f" loc({json.dumps(op.name)})"
    if not regions:
        out.append(line)
        return
    body: Graph = op.attrs[_GRAPH_ATTR]
    out.append(line + " {")
    inner = indent + "  "
    args = ", ".join(f"{_name('%', v.name)}: {format_type(v.type)}" for v in body.inputs)
    out.append(f"{inner}{_name('^', body.name)}({args}):")
    for o in body.ops:
        _fmt_op(o, inner, out)
    out.append(f"{inner}{_fmt_return(body)}")
    out.append(indent + "}")


def _fmt_return(g: Graph) -> str:
    vals = ", ".join(_name("%", v.name) for v in g.outputs)
    return f"return {vals}" if vals else "return"


def print_graph(graph: Graph) -> str:
    """The text IR of `graph` (ends with a newline)."""
    args = ", ".join(f"{_name('%', v.name)}: {format_type(v.type)}" for v in graph.inputs)
    results = ", ".join(f"{_name('%', v.name)}: {format_type(v.type)}" for v in graph.outputs)
    out = [f"graph {_name('@', graph.name)}({args}) -> ({results}) {{"]
    if graph.params:
        out.append("  params {")
        out.extend(f"    {_name('%', p.name)}: {format_type(p.type)}" for p in graph.params)
        out.append("  }")
    for op in graph.ops:
        _fmt_op(op, "  ", out)
    out.append("  " + _fmt_return(graph))
    out.append("}")
    return "\n".join(out) + "\n"


# ---- parsing --------------------------------------------------------------------------------

_LARK: Lark | None = None


def _parser() -> Lark:
    global _LARK
    if _LARK is None:
        # cache=True: the LALR tables are kept in a temp file keyed by the grammar's hash,
        # which saves ~0.2 s per edgecc-opt run
        _LARK = Lark.open(str(Path(__file__).with_name("textir.lark")), parser="lalr",
                          maybe_placeholders=True, cache=True)
    return _LARK


_TERMINAL_TEXT = {"VALUE": "a value (%name)", "GLOBAL": "a graph name (@name)",
                  "BLOCK": "a body label (^name)", "IDENT": "a name", "INT": "an integer",
                  "FLOAT": "a float", "STRING": "a quoted string", "RETURN": "'return'",
                  "$END": "end of file"}


def _describe_terminals(names) -> str:
    lark = _parser()
    shown = set()
    for n in names:
        if n in _TERMINAL_TEXT:
            shown.add(_TERMINAL_TEXT[n])
            continue
        try:
            pattern = lark.get_terminal(n).pattern
            shown.add(repr(pattern.value) if pattern.type == "str" else n)
        except KeyError:
            shown.add(n)
    return ", ".join(sorted(shown))


def _syntax_error(e: UnexpectedInput, text: str, filename: str) -> ModelError:
    where = f"{filename}:{e.line}:{e.column}"
    if isinstance(e, UnexpectedCharacters):
        ch = text[e.pos_in_stream] if e.pos_in_stream < len(text) else ""
        msg = f"unexpected character {ch!r}"
        expected = e.allowed
    elif isinstance(e, UnexpectedToken) and e.token.type != "$END":
        msg = f"unexpected {e.token.value!r}"
        expected = e.expected
    else:  # UnexpectedEOF or an UnexpectedToken at $END
        line = text.count("\n") + 1
        where = f"{filename}:{line}:{len(text) - text.rfind(chr(10))}"
        msg = "unexpected end of file (a '}' or 'return' missing?)"
        expected = None
    if expected:
        msg += f"; expected {_describe_terminals(expected)}"
    return ModelError(f"{where}: {msg}")


def parse_graph(text: str, filename: str = "<string>",
                weights: dict[str, np.ndarray] | None = None) -> Graph:
    """Parse the text IR. Ops are built and checked like build_op: attributes completed with
    defaults, result types inferred and compared with the declared ones."""
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as e:
        raise _syntax_error(e, text, filename) from None
    return _Builder(filename, weights).graph(tree.children[0])


def _blamed(message: str, attr_toks: dict[str, Token], default: Token) -> Token:
    """The attribute a rule message names ('pads' or pads=...), to point the error at it."""
    for key, tok in attr_toks.items():
        if re.search(rf"'{re.escape(key)}'|\b{re.escape(key)}=", message):
            return tok
    return default


def _tok_name(tok: Token, what: str, where) -> str:
    raw = tok.value[1:]
    if raw.startswith('"'):
        try:
            return json.loads(raw)
        except json.JSONDecodeError as e:
            raise ModelError(f"{where(tok)}: bad quoted {what} {raw}: {e.msg}") from None
    return raw


class _Builder:
    """Turns the parse tree into a Graph; one instance per parse."""

    def __init__(self, filename: str, weights: dict[str, np.ndarray] | None):
        self.filename = filename
        self.weights = weights

    def where(self, tok: Token) -> str:
        return f"{self.filename}:{tok.line}:{tok.column}"

    def error(self, tok: Token, msg: str) -> ModelError:
        return ModelError(f"{self.where(tok)}: {msg}")

    def name(self, tok: Token) -> str:
        return _tok_name(tok, "name", self.where)

    def string(self, tok: Token) -> str:
        try:
            return json.loads(tok.value)
        except json.JSONDecodeError as e:
            raise self.error(tok, f"bad string {tok.value}: {e.msg}") from None

    # -- scopes ---------------------------------------------------------------------------
    def define(self, scope: dict, tok: Token, value: Value) -> None:
        if value.name in scope:
            _, first = scope[value.name]
            raise self.error(tok, f"value %{value.name} is already defined at "
                                  f"{self.where(first)}")
        scope[value.name] = (value, tok)

    def use(self, scope: dict, tok: Token, hint: str = "") -> Value:
        n = self.name(tok)
        if n not in scope:
            raise self.error(tok, f"undefined value %{n}{hint}")
        return scope[n][0]

    # -- graphs ---------------------------------------------------------------------------
    def graph(self, t: Tree) -> Graph:
        gname, ins, outs, params, *ops, ret = t.children
        g = Graph(self.name(gname))
        scope: dict = {}
        for tok, ty in self.args(ins):
            v = Value(self.name(tok), ty)
            self.define(scope, tok, v)
            g.inputs.append(v)
        for p in (params.children if params is not None else []):
            tok, type_tree, dense = p.children
            ty = self.type(type_tree)
            v = Value(self.name(tok), ty, data=self.param_data(tok, ty, dense))
            self.define(scope, tok, v)
            g.params.append(v)
        for o in ops:
            g.ops.append(self.op(o, scope, ""))
        g.outputs = self.ret(ret, scope, "")
        declared = self.args(outs)
        rtok = ret.children[0]
        if len(declared) != len(g.outputs):
            raise self.error(rtok, f"graph @{g.name} declares {len(declared)} result(s) but "
                                   f"returns {len(g.outputs)}")
        for (tok, ty), v in zip(declared, g.outputs):
            n = self.name(tok)
            if v.name != n or v.type != ty:
                raise self.error(rtok, f"graph @{g.name} declares result %{n}: "
                                       f"{format_type(ty)} but returns %{v.name}: "
                                       f"{format_type(v.type)}")
        return g

    def args(self, t: Tree | None) -> list[tuple[Token, TensorType]]:
        if t is None:
            return []
        return [(a.children[0], self.type(a.children[1])) for a in t.children]

    def ret(self, t: Tree, scope: dict, hint: str) -> list[Value]:
        _, vals = t.children
        return [self.use(scope, tok, hint) for tok in (vals.children if vals else [])]

    def region(self, t: Tree) -> Graph:
        label, ins, *ops, ret = t.children
        body = Graph(self.name(label))
        scope: dict = {}
        hint = " (a body sees only its own ^(...) arguments and values)"
        for tok, ty in self.args(ins):
            v = Value(self.name(tok), ty)
            self.define(scope, tok, v)
            body.inputs.append(v)
        for o in ops:
            body.ops.append(self.op(o, scope, hint))
        body.outputs = self.ret(ret, scope, hint)
        return body

    # -- ops ------------------------------------------------------------------------------
    def op(self, t: Tree, scope: dict, hint: str) -> Op:
        results, kind_tok, operands, attr_dict, types, loc, region = t.children
        kind = str(kind_tok)
        d = get_opdef(kind)
        if d is None:
            raise self.error(kind_tok, f"unknown op '{kind}'")
        inputs = [None if o.data == "none_operand" else self.use(scope, o.children[0], hint)
                  for o in (operands.children if operands is not None else [])]
        attrs, attr_toks = {}, {}
        for a in (attr_dict.children if attr_dict is not None else []):
            if a is None:
                continue
            key_tok, val = a.children
            key = str(key_tok)
            if key not in d.attrs or key == _GRAPH_ATTR and kind == "Fused":
                known = ", ".join(k for k in sorted(d.attrs) if k != _GRAPH_ATTR) or "none"
                raise self.error(key_tok, f"unknown attribute '{key}' for {kind} "
                                          f"(known: {known})")
            if key in attrs:
                raise self.error(key_tok, f"attribute '{key}' given twice")
            attrs[key] = self.value(val)
            attr_toks[key] = key_tok
        if region is not None:
            if _GRAPH_ATTR not in d.attrs:
                raise self.error(kind_tok, f"{kind} takes no body region")
            attrs[_GRAPH_ATTR] = self.region(region)
        node = self.string(loc.children[0]) if loc is not None else ""
        out_toks = results.children
        out_names = [self.name(tok) for tok in out_toks]
        describe = f"node '{node}' ({kind})" if node else kind
        try:
            op = build_op(kind, inputs, attrs, node, out_names, self.where(kind_tok))
        except OpRuleError as e:
            prefix = f"node '{node}' ({kind}): " if node else ""    # e names the kind
            raise self.error(_blamed(str(e), attr_toks, kind_tok), f"{prefix}{e}") from None
        type_trees = types.children
        if len(type_trees) != len(out_toks):
            raise self.error(kind_tok, f"{describe}: {len(out_toks)} result(s) but "
                                       f"{len(type_trees)} type(s) after ':'")
        for v, tok, tt in zip(op.outputs, out_toks, type_trees):
            declared = self.type(tt)
            if (declared.dtype, declared.shape) != (v.type.dtype, v.type.shape):
                raise self.error(tt.children[0], f"{describe}: type mismatch: result %{v.name} "
                                                 f"is declared {format_type(declared)} but "
                                                 f"the op produces {format_type(v.type)}")
            v.type = declared          # keeps the declared quantization parameters
            self.define(scope, tok, v)
        return op

    # -- types and values -----------------------------------------------------------------
    def type(self, t: Tree) -> TensorType:
        dtype_tok, *dims, quant = t.children
        if dtype_tok.value not in DTYPES:
            raise self.error(dtype_tok, f"unknown element type '{dtype_tok}' "
                                        f"(known: {', '.join(DTYPES)})")
        shape = [int(d) for d in dims if d is not None]
        if any(d < 0 for d in shape):
            raise self.error(dtype_tok, f"negative dimension in {dtype_tok}{shape}")
        return TensorType(dtype_tok.value, tuple(shape), self.quant(quant) if quant else None)

    def quant(self, t: Tree) -> QuantParams:
        fields = {}
        for a in t.children:
            key_tok, val = a.children
            fields[str(key_tok)] = (key_tok, self.value(val))
        unknown = set(fields) - {"scale", "zero_point", "axis"}
        if unknown or not {"scale", "zero_point"} <= set(fields):
            tok = next(iter(fields.values()))[0]
            raise self.error(tok, "quantization parameters are <scale=[...], "
                                  "zero_point=[...]> with an optional axis=N")
        try:
            scale = tuple(float(x) for x in fields["scale"][1])
            zp = tuple(int(x) for x in fields["zero_point"][1])
            axis = fields["axis"][1] if "axis" in fields else None
            if axis is not None and not isinstance(axis, int):
                raise TypeError
        except (TypeError, ValueError):
            raise self.error(fields["scale"][0], "bad quantization parameters: scale is a "
                                                 "list of floats, zero_point a list of ints, "
                                                 "axis an int") from None
        return QuantParams(scale, zp, axis)

    def value(self, t) -> Any:
        kind = t.data
        if kind == "int":
            return int(t.children[0])
        if kind == "float":
            return float(t.children[0])
        if kind == "string":
            return self.string(t.children[0])
        if kind == "word":
            w = t.children[0].value
            words = {"true": True, "false": False, "none": None}
            if w in words:
                return words[w]
            if w in DTYPES:
                return w
            raise self.error(t.children[0], f"bad attribute value '{w}' (quote strings: "
                                            f"\"{w}\"; bare words are true, false, none and "
                                            f"element types)")
        if kind == "list":
            return [self.value(c) for c in t.children if c is not None]
        if kind == "dense":
            return self.dense(t)
        raise AssertionError(kind)

    def dense(self, t: Tree) -> np.ndarray:
        type_tree, data = t.children
        ty = self.type(type_tree)
        tok = type_tree.children[0]
        if data.data == "dense_splat":
            items = [data.children[0]]
        else:
            items = [c for c in data.children if c is not None]
        vals = []
        for it in items:
            v = self.value(it)
            ok = (isinstance(v, bool) if ty.dtype == "bool" else
                  isinstance(v, (int, float)) and not isinstance(v, bool)
                  and (ty.dtype.startswith("f") or isinstance(v, int)))
            if not ok:
                raise self.error(tok, f"dense<{format_type(ty)}>: element {v!r} is not a "
                                      f"{ty.dtype} value")
            vals.append(v)
        if data.data == "dense_splat":
            arr = np.full(ty.shape, vals[0], dtype=dtype_to_numpy(ty.dtype))
        elif len(vals) != ty.numel:
            raise self.error(tok, f"dense<{format_type(ty)}> needs {ty.numel} element(s), "
                                  f"got {len(vals)}")
        else:
            try:
                arr = np.array(vals, dtype=dtype_to_numpy(ty.dtype)).reshape(ty.shape)
            except OverflowError:
                raise self.error(tok, f"dense<{format_type(ty)}>: a value is out of range "
                                      f"for {ty.dtype}") from None
        return arr

    def param_data(self, tok: Token, ty: TensorType, dense: Tree | None) -> np.ndarray:
        name = self.name(tok)
        if dense is not None:
            data = self.dense(dense)
        elif self.weights is None:
            return generated_data(name, ty)
        elif name not in self.weights:
            raise self.error(tok, f"no weights for param %{name} (the weights file has no "
                                  f"array of that name)")
        else:
            data = np.asarray(self.weights[name])
        if data.dtype != ty.np_dtype or tuple(data.shape) != ty.shape:
            raise self.error(tok, f"param %{name} is declared {format_type(ty)} but its data "
                                  f"is {data.dtype}{list(data.shape)}")
        return _contiguous(data)


def _contiguous(a: np.ndarray) -> np.ndarray:
    # not np.ascontiguousarray: it turns a 0-d array into shape [1]
    a = np.asarray(a)
    return a if a.flags.c_contiguous else a.copy(order="C")


def generated_data(name: str, ty: TensorType) -> np.ndarray:
    """Deterministic stand-in weights for a param without data, seeded by its name."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    if ty.dtype.startswith("f"):
        a = rng.uniform(-1.0, 1.0, ty.shape)
    elif ty.dtype == "bool":
        a = rng.integers(0, 2, ty.shape)
    else:      # 1: valid as an index, a divisor, a repeat count
        a = np.ones(ty.shape)
    return _contiguous(a.astype(ty.np_dtype))


# ---- files ----------------------------------------------------------------------------------

def weights_path(path) -> Path:
    """`dir/m.eir` -> `dir/m.weights.npz`."""
    p = Path(path)
    return p.with_name(p.stem + ".weights.npz")


def save_module(graph: Graph, path) -> None:
    """Write `path` (text IR) and `<stem>.weights.npz` beside it; both byte-deterministic."""
    p = Path(path)
    missing = [q.name for q in graph.params if q.data is None]
    if missing:
        raise ModelError(f"graph '{graph.name}': param(s) {', '.join(missing)} have no data; "
                         f"cannot save weights")
    p.write_text(print_graph(graph))
    with zipfile.ZipFile(weights_path(p), "w", zipfile.ZIP_STORED) as zf:
        for param in graph.params:
            buf = io.BytesIO()
            np.lib.format.write_array(buf, _contiguous(param.data),
                                      allow_pickle=False)
            info = zipfile.ZipInfo(param.name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())


def load_module(path) -> Graph:
    """Parse `path`; params get their data from `<stem>.weights.npz` beside it when present,
    else from the deterministic generator (see the module docstring)."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{path}: no such file")
    weights = None
    wp = weights_path(p)
    if wp.is_file():
        try:
            with np.load(wp, allow_pickle=False) as npz:
                weights = {k: npz[k] for k in npz.files}
        except Exception as e:  # numpy raises several types for a bad file
            raise ModelError(f"{wp}: not a readable weights file ({type(e).__name__}: {e})") \
                from None
    try:
        text = p.read_text()
    except UnicodeDecodeError as e:
        raise ModelError(f"{path}: not a text IR file ({e.reason} at byte {e.start})") from None
    return parse_graph(text, str(path), weights)
