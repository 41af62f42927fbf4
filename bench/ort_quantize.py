"""onnxruntime's post-training quantization of a model, for comparison with edgecc --int8 and
as input to edgecc's QDQ / QOperator import.

    python bench/ort_quantize.py MODEL.onnx CALIB.npz OUT.onnx [--format qdq|qoperator]
        [--per-tensor] [--activation u8|s8] [--input-shape x=1,3,48,192]

quantize_static (MinMax) with per-channel s8 weights and u8 activations by default. Models
older than opset 13 are converted first (per-channel QDQ needs 13), dynamic dims bound.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import version_converter


def prepare(model_path: str, shapes: dict) -> onnx.ModelProto:
    """The model at opset >= 13 with its dynamic input dims bound."""
    m = onnx.load(model_path)
    opset = max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
    if opset < 13:
        m = version_converter.convert_version(m, 13)
    # weights held in Constant nodes (PaddlePaddle's exports) become initializers: else
    # quantize_static treats them as activations (per-tensor u8 weights)
    keep = []
    for n in m.graph.node:
        if n.op_type == "Constant" and len(n.attribute) == 1 and n.attribute[0].name == "value":
            t = onnx.TensorProto()
            t.CopyFrom(n.attribute[0].t)
            t.name = n.output[0]
            m.graph.initializer.append(t)
        else:
            keep.append(n)
    del m.graph.node[:]
    m.graph.node.extend(keep)
    for i in m.graph.input:
        if i.name in shapes:
            for d, n in zip(i.type.tensor_type.shape.dim, shapes[i.name]):
                d.ClearField("dim_param")
                d.dim_value = n
    return m


def quantize(model_path: str, calib: dict, out: str, fmt: str = "qdq",
             per_channel: bool = True, activation: str = "u8", shapes: dict | None = None):
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)
    name = next(iter(calib))
    n = calib[name].shape[0]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.i = 0

        def get_next(self):
            if self.i >= n:
                return None
            self.i += 1
            return {k: v[self.i - 1] for k, v in calib.items()}
    shapes = shapes or {k: v.shape[1:] for k, v in calib.items()}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "model.onnx"
        onnx.save(prepare(model_path, shapes), src)
        quantize_static(str(src), out, Reader(),
                        quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
                        per_channel=per_channel, weight_type=QuantType.QInt8,
                        activation_type=QuantType.QUInt8 if activation == "u8" else
                        QuantType.QInt8)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("calib", help=".npz keyed by input name, leading sample axis")
    ap.add_argument("out")
    ap.add_argument("--format", default="qdq", choices=["qdq", "qoperator"])
    ap.add_argument("--per-tensor", action="store_true")
    ap.add_argument("--activation", default="u8", choices=["u8", "s8"])
    args = ap.parse_args(argv)
    calib = dict(np.load(args.calib))
    quantize(args.model, calib, args.out, args.format, not args.per_tensor, args.activation)
    return 0


if __name__ == "__main__":
    sys.exit(main())
