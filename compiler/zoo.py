"""The model zoo used by tests and benchmarks: 9 light-zoo CNNs + 2 PP-OCR models.

    path = materialize("resnet50", cache_dir)      # a real .onnx file (cached)
    feeds = sample_inputs("resnet50", seed=0)      # {input name: array}
    img = text_image(48, 192)                      # rendered text, PP-OCR-normalized NCHW

The onnx wheel's "light" models carry their weights as ConstantOfShape nodes filled with 0.02,
which makes every activation degenerate. `materialize` replaces those with seeded random
weights whose scale depends on the consumer (He-normal conv/gemm weights, small biases,
BatchNorm statistics near identity), so activations stay O(1) and numeric comparisons mean
something. The PP-OCR models are real trained models and are used as they are.
Shared files live in `<repo>/../shared` (override with EDGECC_SHARED).
`python -m edgecc.zoo -o DIR [name ...]` materializes models and prints their paths.
"""
from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from .errors import UsageError
from .ops import has_trait

_RECIPE = 5          # bump when the weight recipe changes: cached files are keyed by it


@dataclass(frozen=True)
class ZooModel:
    name: str
    file: str            # light-zoo file name, or a file under <shared>/models
    input: str
    shape: tuple[int, ...]
    light: bool


ZOO: dict[str, ZooModel] = {m.name: m for m in [
    ZooModel("resnet50", "light_resnet50.onnx", "gpu_0/data_0", (1, 3, 224, 224), True),
    ZooModel("squeezenet", "light_squeezenet.onnx", "data_0", (1, 3, 224, 224), True),
    ZooModel("shufflenet", "light_shufflenet.onnx", "gpu_0/data_0", (1, 3, 224, 224), True),
    ZooModel("inception_v1", "light_inception_v1.onnx", "data_0", (1, 3, 224, 224), True),
    ZooModel("inception_v2", "light_inception_v2.onnx", "data_0", (1, 3, 224, 224), True),
    ZooModel("densenet121", "light_densenet121.onnx", "data_0", (1, 3, 224, 224), True),
    ZooModel("vgg19", "light_vgg19.onnx", "data_0", (1, 3, 224, 224), True),
    ZooModel("bvlc_alexnet", "light_bvlc_alexnet.onnx", "data_0", (1, 3, 224, 224), True),
    ZooModel("zfnet512", "light_zfnet512.onnx", "gpu_0/data_0", (1, 3, 224, 224), True),
    # PP-OCR det needs H, W multiples of 32
    ZooModel("ppocr_det", "ch_PP-OCRv4_det_infer.onnx", "x", (1, 3, 320, 320), False),
    ZooModel("ppocr_cls", "ch_ppocr_mobile_v2.0_cls_infer.onnx", "x", (1, 3, 48, 192), False),
]}


def _get(name: str) -> ZooModel:
    if name not in ZOO:
        raise UsageError(f"unknown zoo model '{name}'; known: {', '.join(ZOO)}")
    return ZOO[name]


def shared_dir() -> Path:
    env = os.environ.get("EDGECC_SHARED")
    return Path(env) if env else Path(__file__).resolve().parent.parent.parent / "shared"


def source_path(name: str) -> Path:
    """The model file as shipped (light zoo: constant-filled weights)."""
    m = _get(name)
    if m.light:
        return Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / m.file
    return shared_dir() / "models" / m.file


def default_input_shapes(name: str) -> dict[str, tuple[int, ...]]:
    m = _get(name)
    return {m.input: m.shape}


def sample_inputs(name: str, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded inputs of the default shape: N(0,1) for ImageNet CNNs, U(-1,1) for PP-OCR
    (whose inputs are normalized to [-1, 1])."""
    m = _get(name)
    rng = np.random.default_rng(seed)
    if m.light:
        x = rng.standard_normal(m.shape)
    else:
        x = rng.uniform(-1.0, 1.0, m.shape)
    return {m.input: x.astype(np.float32)}


def default_cache_dir() -> Path:
    """Where materialized models are kept (tests and benchmarks share it):
    `$EDGECC_ZOO_CACHE`, else `<tmp>/edgecc-zoo-cache`."""
    import tempfile
    return Path(os.environ.get("EDGECC_ZOO_CACHE")
                or Path(tempfile.gettempdir()) / "edgecc-zoo-cache")


def materialize(name: str, cache_dir: Path | str | None = None) -> Path:
    """A runnable .onnx for `name`: PP-OCR files as they are; light models with seeded
    realistic weights, written once to `cache_dir` (default: default_cache_dir()), deterministic
    bytes."""
    m = _get(name)
    src = source_path(name)
    if not src.is_file():
        raise UsageError(f"zoo model '{name}': {src} not found (set EDGECC_SHARED to the "
                         f"directory holding models/)")
    if not m.light:
        return src
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    out = cache_dir / f"{name}-r{_RECIPE}.onnx"
    if out.is_file():
        return out
    model = _calibrate_batchnorm(_with_random_weights(onnx.load(str(src))))
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(model.SerializeToString(deterministic=True))
    os.replace(tmp, out)      # atomic: concurrent test workers never see a partial file
    return out


# ---- weights ---------------------------------------------------------------------------------


def _shape_only(op_type: str) -> bool:
    """ONNX ops that pass their data through under another shape (the IR's views)."""
    return has_trait(op_type, "view")


def _roles(graph: onnx.GraphProto) -> dict[str, tuple[str, int, onnx.NodeProto]]:
    """value name -> (consumer op type, operand index, consumer node), looking through
    shape-only ops so that Unsqueeze(w) -> Mul gives w the role of a Mul operand."""
    readers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for n in graph.node:
        for i, name in enumerate(n.input):
            readers.setdefault(name, []).append((n, i))

    def role(name, depth=0):
        for n, i in readers.get(name, []):
            if _shape_only(n.op_type) and i == 0 and depth < 4:
                r = role(n.output[0], depth + 1)
                if r:
                    return r
            elif not _shape_only(n.op_type):
                return n.op_type, i, n
        return None

    return {n.output[0]: role(n.output[0]) for n in graph.node
            if n.op_type == "ConstantOfShape"}


def _attr(node: onnx.NodeProto, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _draw(name: str, shape, role) -> np.ndarray:
    rng = np.random.default_rng([_RECIPE, zlib.crc32(name.encode())])
    kind, idx, node = role or ("", -1, None)
    if kind in ("Conv", "ConvTranspose") and idx == 1 or kind in ("Gemm", "MatMul") and idx == 1:
        if kind == "Gemm":      # shape may carry leading 1s (reshaped before use)
            fan_in = shape[-1] if _attr(node, "transB", 0) else shape[-2]
        elif kind == "MatMul":
            fan_in = shape[-2]
        else:
            fan_in = int(np.prod(shape[1:]))
        w = rng.standard_normal(shape) * np.sqrt(2.0 / max(fan_in, 1))
    elif kind == "BatchNormalization" and idx in (1, 4) or kind == "Mul":
        w = rng.uniform(0.5, 1.5, shape)                 # BN scale / variance, per-channel scale
    elif kind == "BatchNormalization" or kind in ("Add", "Sum"):
        w = rng.normal(0.0, 0.1, shape)                  # BN bias / mean, per-channel bias
    else:
        w = rng.normal(0.0, 0.01, shape)                 # conv / gemm biases and the rest
    return w.astype(np.float32)


def _with_random_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    roles = _roles(g)
    new_inits, drop_nodes = [], set()
    for k, n in enumerate(g.node):
        if n.op_type != "ConstantOfShape" or n.input[0] not in inits:
            continue
        value = _attr(n, "value", None)
        if value is not None and value.data_type != onnx.TensorProto.FLOAT:
            continue
        shape = tuple(int(d) for d in numpy_helper.to_array(inits[n.input[0]]))
        arr = _draw(n.output[0], shape, roles[n.output[0]])
        new_inits.append(numpy_helper.from_array(arr, n.output[0]))
        drop_nodes.add(k)
    still_read = {i for k, n in enumerate(g.node) if k not in drop_nodes for i in n.input}
    keep_nodes = [n for k, n in enumerate(g.node) if k not in drop_nodes]
    # initializers nobody reads (zfnet512/resnet50 carry one) would make onnxruntime warn
    keep_inits = [t for t in g.initializer if t.name in still_read] + new_inits
    real_inputs = [i for i in g.input if i.name not in inits]   # initializers leave the inputs
    del g.node[:]
    g.node.extend(keep_nodes)
    del g.initializer[:]
    g.initializer.extend(keep_inits)
    del g.input[:]
    g.input.extend(real_inputs)
    model.ir_version = max(model.ir_version, 4)     # IR >= 4: initializers need not be inputs
    return model


def _calibrate_batchnorm(model: onnx.ModelProto) -> onnx.ModelProto:
    """Set each BatchNormalization's running mean/var to the statistics its input really has on
    a seeded calibration image (perturbed: var x U(0.5,1.5), mean + N(0,0.1)·std), as in a
    trained network. Without this, residual sums double the activation scale per block
    (resnet50 reached 7e4). BNs are calibrated in dependency order; the statistics are fed
    to one onnxruntime session as overridable initializers."""
    import onnxruntime as ort
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    bns = [n for n in g.node if n.op_type == "BatchNormalization"
           and n.input[3] in inits and n.input[4] in inits]
    if not bns:
        return model
    bn_ids = {id(n) for n in bns}
    deps, upstream = {}, {}       # BN -> BNs before it; value -> BNs that feed it
    for n in g.node:              # the light-zoo files are topologically sorted
        before = set().union(*(upstream.get(i, set()) for i in n.input))
        if id(n) in bn_ids:
            deps[id(n)] = before
            before = before | {id(n)}
        for o in n.output:
            upstream[o] = before
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    stats = {}
    for n in bns:
        for name in n.input[3:5]:
            stats[name] = numpy_helper.to_array(inits[name]).copy()
            probe.graph.input.append(onnx.helper.make_tensor_value_info(
                name, onnx.TensorProto.FLOAT, list(stats[name].shape)))
    del probe.graph.output[:]
    for x in dict.fromkeys(n.input[0] for n in bns):
        probe.graph.output.append(onnx.helper.make_tensor_value_info(
            x, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1        # reproducible sums -> deterministic file bytes
    sess = ort.InferenceSession(probe.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    feeds = {i.name: np.random.default_rng(_RECIPE).standard_normal(
        [d.dim_value for d in i.type.tensor_type.shape.dim]).astype(np.float32)
        for i in g.input}
    done: set[int] = set()
    while len(done) < len(bns):
        level = [n for n in bns if id(n) not in done and deps[id(n)] <= done]
        names = list(dict.fromkeys(n.input[0] for n in level))
        got = dict(zip(names, sess.run(names, {**feeds, **stats})))
        for n in level:
            x = got[n.input[0]].astype(np.float64)
            axes = (0,) + tuple(range(2, x.ndim))
            mean, var = x.mean(axis=axes), x.var(axis=axes)
            rng = np.random.default_rng([_RECIPE, zlib.crc32(n.input[3].encode())])
            stats[n.input[3]] = (mean + rng.normal(0, 0.1, mean.shape) * np.sqrt(var)
                                 ).astype(np.float32)
            stats[n.input[4]] = (var * rng.uniform(0.5, 1.5, var.shape) + 1e-3
                                 ).astype(np.float32)
            done.add(id(n))
    for t in g.initializer:
        if t.name in stats:
            t.CopyFrom(numpy_helper.from_array(stats[t.name], t.name))
    return model


# ---- a realistic PP-OCR input ------------------------------------------------------------------
_LINES = ["edgecc 0.1 compiles ONNX", "Hello OCR 2026-11-23", "The quick brown fox",
          "jumps over the lazy dog", "ABCDEFGHIJKLM 0123456789", "nopqrstuvwxyz #$%&*+"]


def text_image(height: int, width: int) -> np.ndarray:
    """Black text on white (Pillow's built-in font), as a [1,3,H,W] float32 array normalized
    the PP-OCR way: (pixel/255 - 0.5) / 0.5. Deterministic for a given Pillow version."""
    from PIL import Image, ImageDraw, ImageFont
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    size = int(max(8, min(28, height * 0.6)))
    font = ImageFont.load_default(size=size)
    step = int(size * 1.5)
    y, line = max(1, (height - size) // 2) if height < 2 * step else size // 2, 0
    while y + size <= height and line < 64:
        draw.text((max(2, size // 3), y), _LINES[line % len(_LINES)], fill=(0, 0, 0), font=font)
        y, line = y + step, line + 1
    x = np.asarray(img, dtype=np.float32).transpose(2, 0, 1)[None]
    return np.ascontiguousarray((x / 255.0 - 0.5) / 0.5)


def main(argv=None) -> int:
    """python -m edgecc.zoo [-o DIR] [name ...]: materialize models, print their paths."""
    import argparse
    import sys
    ap = argparse.ArgumentParser(prog="python -m edgecc.zoo", description=main.__doc__)
    ap.add_argument("names", nargs="*", default=list(ZOO), help=", ".join(ZOO))
    ap.add_argument("-o", "--cache-dir", default="zoo-models")
    args = ap.parse_args(argv)
    try:
        for name in args.names:
            shape = ",".join(map(str, _get(name).shape))
            print(f"{name}\t{materialize(name, args.cache_dir)}\t"
                  f"--input-shape {_get(name).input}={shape}")
    except UsageError as e:
        print(f"edgecc.zoo: error: {e.message}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
