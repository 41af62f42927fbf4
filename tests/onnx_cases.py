"""Small hand-made ONNX models, one or a few per op family and opset form, shared by
test_import.py (reference executor vs onnxruntime) and test_export.py (round trip)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from edgecc.dtypes import dtype_to_onnx, numpy_to_dtype


@dataclass
class Case:
    id: str
    opset: int
    nodes: list
    inputs: dict                 # name -> feed array (its shape/dtype become the input type)
    outputs: list
    inits: dict = field(default_factory=dict)
    out_types: dict = field(default_factory=dict)   # output name -> ONNX elem type if not float

    def model(self) -> onnx.ModelProto:
        ins = [helper.make_tensor_value_info(n, dtype_to_onnx(numpy_to_dtype(a.dtype)), a.shape)
               for n, a in self.inputs.items()]
        outs = [helper.make_tensor_value_info(n, self.out_types.get(n, TensorProto.FLOAT), None)
                for n in self.outputs]
        inits = [numpy_helper.from_array(np.asarray(a), n) for n, a in self.inits.items()]
        g = helper.make_graph(self.nodes, self.id, ins, outs, inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", self.opset)])
        m.ir_version = 8 if self.opset <= 17 else 9
        return m


def ort_run(model, feeds) -> list:
    """onnxruntime's (CPU) outputs for a model given as a path or a ModelProto."""
    src = model if isinstance(model, str) else model.SerializeToString()
    return ort.InferenceSession(src, providers=["CPUExecutionProvider"]).run(None, feeds)


def rel_err(ref, got) -> float:
    """Largest absolute error relative to the largest |ref|."""
    ref = np.asarray(ref, np.float64)
    return float(np.abs(ref - got).max() / max(np.abs(ref).max(), 1e-30))

def _r(*shape, seed=0, lo=-1.0, hi=1.0):
    return np.random.default_rng(seed + sum(shape)).uniform(lo, hi, shape).astype(np.float32)


def _i64(*v):
    return np.array(v, dtype=np.int64)


N = helper.make_node
X4 = {"x": _r(1, 4, 9, 9)}

CASES = [
    # ---- elementwise
    Case("binary_broadcast", 13, [N("Add", ["x", "b"], ["t"]), N("Mul", ["t", "x"], ["u"]),
                                  N("Div", ["u", "c"], ["y"])],
         {"x": _r(2, 3, 4)}, ["y"], {"b": _r(4), "c": _r(3, 1, lo=1, hi=2)}),
    Case("unary_chain", 13, [N("LeakyRelu", ["x"], ["a"], alpha=0.2), N("HardSigmoid", ["a"], ["b"]),
                             N("Elu", ["b"], ["c"]), N("Sigmoid", ["c"], ["d"]), N("Tanh", ["d"], ["y"])],
         {"x": _r(2, 5)}, ["y"]),
    Case("hardswish_erf", 14, [N("HardSwish", ["x"], ["a"]), N("Erf", ["a"], ["y"])],
         {"x": _r(3, 7, lo=-4, hi=4)}, ["y"]),
    Case("clip_opset11_inputs", 11, [N("Clip", ["x", "lo", "hi"], ["y"])],
         {"x": _r(4, 4, lo=-2, hi=2)}, ["y"], {"lo": np.float32(-0.5), "hi": np.float32(0.7)}),
    Case("clip_opset9_attrs", 9, [N("Clip", ["x"], ["y"], min=-0.25, max=0.5)],
         {"x": _r(4, 4, lo=-2, hi=2)}, ["y"]),
    Case("clip_only_max", 13, [N("Clip", ["x", "", "hi"], ["y"])],
         {"x": _r(4, 4, lo=-2, hi=2)}, ["y"], {"hi": np.float32(0.3)}),
    Case("cast_where_compare", 13, [N("Greater", ["x", "z"], ["m"]), N("Where", ["m", "x", "z"], ["w"]),
                                    N("Cast", ["w"], ["y"], to=TensorProto.DOUBLE)],
         {"x": _r(3, 4)}, ["y"], {"z": np.float32(0.1)}, {"y": TensorProto.DOUBLE}),
    Case("prelu_sum_max", 13, [N("PRelu", ["x", "s"], ["a"]), N("Sum", ["a", "x", "x"], ["b"]),
                               N("Max", ["b", "x"], ["y"])],
         {"x": _r(1, 3, 4, 4)}, ["y"], {"s": _r(3, 1, 1)}),
    # ---- conv / dense / norms
    Case("conv_same_upper_s2_group", 13,
         [N("Conv", ["x", "w", "b"], ["y"], auto_pad="SAME_UPPER", strides=[2, 2], group=2)],
         X4, ["y"], {"w": _r(6, 2, 3, 3), "b": _r(6)}),
    Case("conv_pads_dilations", 11,
         [N("Conv", ["x", "w"], ["y"], pads=[1, 0, 2, 1], dilations=[2, 1], kernel_shape=[3, 2])],
         X4, ["y"], {"w": _r(3, 4, 3, 2)}),
    Case("conv_transpose_output_shape", 13,
         [N("ConvTranspose", ["x", "w", "b"], ["y"], strides=[2, 2], output_shape=[18, 18])],
         X4, ["y"], {"w": _r(4, 3, 3, 3), "b": _r(3)}),
    Case("conv_transpose_same_upper", 13,
         [N("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], auto_pad="SAME_UPPER")],
         X4, ["y"], {"w": _r(4, 2, 3, 3)}),
    Case("conv_transpose_pads", 12,
         [N("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], pads=[0, 0, 0, 0],
            kernel_shape=[2, 2])], X4, ["y"], {"w": _r(4, 2, 2, 2)}),
    Case("gemm_transB_matmul", 13, [N("Gemm", ["a", "w", "c"], ["g"], transB=1, alpha=0.5, beta=2.0),
                                    N("MatMul", ["g", "m"], ["y"])],
         {"a": _r(3, 5)}, ["y"], {"w": _r(4, 5), "c": _r(4), "m": _r(4, 2)}),
    Case("matmul_batched", 13, [N("MatMul", ["a", "b"], ["y"])], {"a": _r(2, 3, 4, 5)}, ["y"],
         {"b": _r(5, 6)}),
    Case("batchnorm_instnorm_lrn", 9,
         [N("BatchNormalization", ["x", "s", "bb", "m", "v"], ["a"], epsilon=1e-3),
          N("InstanceNormalization", ["a", "s", "bb"], ["c"]), N("LRN", ["c"], ["y"], size=3)],
         X4, ["y"], {"s": _r(4, lo=0.5, hi=1.5), "bb": _r(4), "m": _r(4), "v": _r(4, lo=0.5, hi=1.5)}),
    Case("batchnorm_training_mode_running_stats", 15,
         [N("BatchNormalization", ["x", "s", "bb", "m", "v"], ["y", "rm", "rv"], epsilon=1e-3,
            momentum=0.8, training_mode=1)],
         X4, ["y", "rm", "rv"],
         {"s": _r(4, lo=0.5, hi=1.5), "bb": _r(4), "m": _r(4), "v": _r(4, lo=0.5, hi=1.5)}),
    Case("layernorm", 17, [N("LayerNormalization", ["x", "s", "b"], ["y"], axis=-2)],
         {"x": _r(2, 3, 4)}, ["y"], {"s": _r(3, 4), "b": _r(3, 4)}),
    Case("layernorm_mean_invstd_outputs", 17,
         [N("LayerNormalization", ["x", "s", "b"], ["y", "mean", "inv"], axis=1, epsilon=1e-3)],
         {"x": _r(2, 3, 4)}, ["y", "mean", "inv"], {"s": _r(3, 4), "b": _r(3, 4)}),
    Case("layernorm_no_bias_invstd_only", 17,
         [N("LayerNormalization", ["x", "s"], ["y", "", "inv"])],
         {"x": _r(2, 3, 4)}, ["y", "inv"], {"s": _r(4)}),
    Case("dropout_identity", 13, [N("Dropout", ["x"], ["a"]), N("Identity", ["a"], ["y"])],
         {"x": _r(2, 3)}, ["y"]),
    # ---- pooling / reductions / softmax
    Case("maxpool_same_lower_ceil", 12,
         [N("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_LOWER")],
         X4, ["y"]),
    Case("maxpool_ceil_dilations", 12,
         [N("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1,
            dilations=[1, 2], pads=[1, 1, 0, 0])], X4, ["y"]),
    Case("avgpool_count_include_pad", 11,
         [N("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
            count_include_pad=1)], X4, ["y"]),
    Case("global_pools", 13, [N("GlobalAveragePool", ["x"], ["a"]), N("GlobalMaxPool", ["x"], ["b"]),
                              N("Add", ["a", "b"], ["y"])], X4, ["y"]),
    Case("reduce_attr_opset13", 13, [N("ReduceMean", ["x"], ["y"], axes=[-1, 1], keepdims=0)],
         X4, ["y"]),
    Case("reduce_input_opset18", 18, [N("ReduceMax", ["x", "ax"], ["a"]),
                                      N("ReduceSum", ["a"], ["y"], keepdims=0)],
         X4, ["y"], {"ax": _i64(2)}),
    Case("reducesum_input_opset13", 13, [N("ReduceSum", ["x", "ax"], ["y"])], X4, ["y"],
         {"ax": _i64(-1, 0)}),
    Case("argmax_negative_axis", 13, [N("ArgMax", ["x"], ["y"], axis=-1, keepdims=0)], X4, ["y"],
         out_types={"y": TensorProto.INT64}),
    Case("softmax_opset11_coerced", 11, [N("Softmax", ["x"], ["y"], axis=1)],
         {"x": _r(2, 3, 4)}, ["y"]),
    Case("logsoftmax_opset11_last", 11, [N("LogSoftmax", ["x"], ["y"], axis=-1)],
         {"x": _r(2, 3, 4)}, ["y"]),
    Case("softmax_opset13_middle", 13, [N("Softmax", ["x"], ["y"], axis=1)],
         {"x": _r(2, 3, 4)}, ["y"]),
    # ---- data movement
    Case("reshape_zero_minus1_flatten", 13,
         [N("Reshape", ["x", "s"], ["a"]), N("Transpose", ["a"], ["b"], perm=[0, 2, 1]),
          N("Flatten", ["b"], ["y"], axis=-1)], X4, ["y"], {"s": _i64(0, -1, 9)}),
    Case("squeeze_unsqueeze_opset11", 11,
         [N("Unsqueeze", ["x"], ["a"], axes=[0, -1]), N("Squeeze", ["a"], ["y"], axes=[0])],
         {"x": _r(3, 4)}, ["y"]),
    Case("squeeze_unsqueeze_opset13", 13,
         [N("Unsqueeze", ["x", "ax"], ["a"]), N("Squeeze", ["a"], ["y"])],
         {"x": _r(3, 4)}, ["y"], {"ax": _i64(1, 3)}),
    Case("expand_tile_concat", 13,
         [N("Expand", ["x", "s"], ["a"]), N("Tile", ["x", "r"], ["b"]),
          N("Concat", ["a", "b"], ["y"], axis=-1)],
         {"x": _r(1, 3, 1)}, ["y"], {"s": _i64(2, 3, 4), "r": _i64(2, 1, 4)}),
    Case("split_opset11_attr", 11, [N("Split", ["x"], ["a", "b"], axis=1, split=[1, 3]),
                                    N("Mul", ["b", "b"], ["y"])], X4, ["a", "y"]),
    Case("split_opset13_input", 13, [N("Split", ["x", "sp"], ["a", "b"], axis=-1)],
         X4, ["a", "b"], {"sp": _i64(4, 5)}),
    Case("split_opset18_num_outputs", 18, [N("Split", ["x"], ["a", "b", "c"], axis=2, num_outputs=3)],
         X4, ["a", "b", "c"]),
    Case("split_equal_default", 13, [N("Split", ["x"], ["a", "b"], axis=1)], X4, ["a", "b"]),
    Case("slice_opset9_attrs", 9, [N("Slice", ["x"], ["y"], starts=[1, -4], ends=[1000, -1],
                                     axes=[1, 3])], X4, ["y"]),
    Case("slice_negative_steps", 13, [N("Slice", ["x", "st", "en", "ax", "sp"], ["y"])], X4, ["y"],
         {"st": _i64(-1, 7), "en": _i64(-100, 0), "ax": _i64(2, -1), "sp": _i64(-2, -3)}),
    Case("gather_gatherelements", 13,
         [N("Gather", ["x", "i"], ["a"], axis=-1),
          N("GatherElements", ["x", "j"], ["b"], axis=1),
          N("ReduceSum", ["a", "ax"], ["c"], keepdims=0), N("Add", ["b", "c"], ["y"])],
         {"x": _r(3, 4)}, ["y"],
         {"i": _i64(0, -1), "j": np.array([[0], [3], [1]], np.int64), "ax": _i64(1)}),
    Case("pad_opset11_reflect", 11, [N("Pad", ["x", "p"], ["y"], mode="reflect")], X4, ["y"],
         {"p": _i64(0, 0, 1, 2, 0, 0, 2, 1)}),
    Case("pad_opset2style_constant", 10, [N("Pad", ["x"], ["y"], pads=[0, 1, 1, 0, 0, 0, 1, 2],
                                            value=0.5)], X4, ["y"]),
    Case("pad_opset18_axes", 18, [N("Pad", ["x", "p", "v", "ax"], ["y"], mode="edge")], X4, ["y"],
         {"p": _i64(1, 2, 3, 0), "v": np.float32(0), "ax": _i64(-1, 1)}),
    Case("resize_opset11_linear_scales", 11,
         [N("Resize", ["x", "roi", "sc"], ["y"], mode="linear")], X4, ["y"],
         {"roi": np.zeros(0, np.float32), "sc": np.array([1, 1, 2, 1.5], np.float32)}),
    Case("resize_opset13_nearest_sizes", 13,
         [N("Resize", ["x", "", "", "sz"], ["y"], mode="nearest",
            coordinate_transformation_mode="asymmetric", nearest_mode="floor")], X4, ["y"],
         {"sz": _i64(1, 4, 18, 5)}),
    Case("resize_opset18_axes_reversed", 18,
         [N("Resize", ["x", "", "", "sz"], ["y"], mode="linear", axes=[3, 2])], X4, ["y"],
         {"sz": _i64(5, 12)}),
    Case("resize_keep_aspect_not_larger", 18,
         [N("Resize", ["x", "", "", "sz"], ["y"], mode="nearest", axes=[2, 3],
            keep_aspect_ratio_policy="not_larger")], X4, ["y"], {"sz": _i64(7, 20)}),
    Case("resize_keep_aspect_not_smaller", 18,
         [N("Resize", ["x", "", "", "sz"], ["y"], mode="linear", axes=[3, 2],
            keep_aspect_ratio_policy="not_smaller")], X4, ["y"], {"sz": _i64(20, 5)}),
    Case("resize_opset10", 10, [N("Resize", ["x", "sc"], ["y"], mode="nearest")], X4, ["y"],
         {"sc": np.array([1, 1, 2, 2], np.float32)}),
    Case("upsample_opset9", 9, [N("Upsample", ["x", "sc"], ["y"], mode="nearest")], X4, ["y"],
         {"sc": np.array([1, 1, 2, 3], np.float32)}),
    Case("depth_space", 13, [N("DepthToSpace", ["x"], ["a"], blocksize=2, mode="CRD"),
                             N("SpaceToDepth", ["a"], ["y"], blocksize=2)],
         {"x": _r(1, 8, 3, 3)}, ["y"]),
    # ---- the oldest supported opsets
    Case("opset7_upsample_bn_pool", 7,
         [N("Upsample", ["x"], ["u"], scales=[1.0, 1.0, 2.0, 2.0], mode="nearest"),
          N("BatchNormalization", ["u", "s", "bb", "m", "v"], ["b"], spatial=1),
          N("MaxPool", ["b"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
          N("Softmax", ["p"], ["y"])],
         X4, ["y"], {"s": _r(4, lo=0.5, hi=1.5), "bb": _r(4), "m": _r(4), "v": _r(4, lo=0.5, hi=1.5)}),
    Case("opset8_gemm_flatten_sum", 8,
         [N("Flatten", ["x"], ["f"]), N("Gemm", ["f", "w", "c"], ["g"], transB=1),
          N("Sum", ["g", "g"], ["y"])], X4, ["y"], {"w": _r(3, 324), "c": _r(3)}),
    # ---- folding of shape computations
    Case("fold_shape_chain", 13,
         [N("Shape", ["x"], ["s"]), N("Gather", ["s", "k"], ["g"], axis=0),
          N("Unsqueeze", ["g", "z"], ["u"]), N("Concat", ["u", "m1"], ["t"], axis=0),
          N("Reshape", ["x", "t"], ["y"])],
         X4, ["y"], {"k": np.array(0, np.int64), "z": _i64(0), "m1": _i64(-1)}),
    Case("fold_constantofshape_range", 13,
         [N("Constant", [], ["c"], value=numpy_helper.from_array(_i64(2, 9))),
          N("ConstantOfShape", ["c"], ["o"], value=numpy_helper.from_array(np.array([0.5], np.float32))),
          N("Range", ["r0", "r1", "r2"], ["r"]), N("Cast", ["r"], ["rf"], to=TensorProto.FLOAT),
          N("Mul", ["o", "rf"], ["p"]), N("Add", ["x", "p"], ["y"])],
         {"x": _r(2, 9)}, ["y"],
         {"r0": np.array(0, np.int64), "r1": np.array(9, np.int64), "r2": np.array(1, np.int64)}),
    Case("fold_size_shape_slice", 15,
         [N("Shape", ["x"], ["s"], start=1, end=3), N("ReduceProd", ["s"], ["p"], keepdims=1),
          N("Size", ["x"], ["n"]), N("Div", ["n", "p"], ["d"]), N("Concat", ["d", "p"], ["t"], axis=0),
          N("Reshape", ["x", "t"], ["y"])], X4, ["y"]),
    # ---- recurrent
    Case("lstm_forward", 13, [N("LSTM", ["x", "w", "r", "b"], ["y", "yh", "yc"], hidden_size=3)],
         {"x": _r(4, 2, 5)}, ["y", "yh", "yc"],
         {"w": _r(1, 12, 5), "r": _r(1, 12, 3), "b": _r(1, 24)}),
    Case("lstm_bidirectional_partial_outputs", 14,
         [N("LSTM", ["x", "w", "r"], ["", "yh"], hidden_size=2, direction="bidirectional")],
         {"x": _r(3, 1, 4)}, ["yh"], {"w": _r(2, 8, 4), "r": _r(2, 8, 2)}),
]
