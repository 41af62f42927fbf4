"""Element types: the one table of the IR's short names and what every layer calls them.

    DTYPE["i8"].numpy, .onnx, .tvm, .c, .dlpack, .bits, .itemsize, .is_float, .is_int, ...

Every module that maps element types (numpy, ONNX, TVM, the bundle's C header and DLTensor
descriptors) reads this table; nothing else keeps its own dtype list.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from onnx import TensorProto


@dataclass(frozen=True)
class DType:
    name: str            # the IR's short name: f32, i8, bool, ...
    numpy: np.dtype
    onnx: int            # TensorProto enum
    tvm: str             # TVM/TIR dtype string
    c: str               # C element type in model.h (f16 travels as its bits)
    dlpack: tuple[int, int]   # (DLDataTypeCode, bits)
    is_float: bool
    is_signed: bool      # floats and signed integers
    is_quantized: bool   # an element type of affine-quantized tensors (int8 / uint8)

    @property
    def itemsize(self) -> int:
        return self.numpy.itemsize

    @property
    def bits(self) -> int:
        return self.dlpack[1]

    @property
    def is_int(self) -> bool:
        return not self.is_float and self.name != "bool"


def _d(name, np_type, onnx_enum, tvm, c, code, bits, is_float=False, is_signed=False,
       is_quantized=False):
    return DType(name, np.dtype(np_type), onnx_enum, tvm, c, (code, bits), is_float,
                 is_signed, is_quantized)


# DLDataTypeCode: 0 int, 1 uint, 2 float, 6 bool
_TABLE = [
    _d("f32", np.float32, TensorProto.FLOAT, "float32", "float", 2, 32, True, True),
    _d("f16", np.float16, TensorProto.FLOAT16, "float16", "uint16_t", 2, 16, True, True),
    _d("f64", np.float64, TensorProto.DOUBLE, "float64", "double", 2, 64, True, True),
    _d("i8", np.int8, TensorProto.INT8, "int8", "int8_t", 0, 8, is_signed=True, is_quantized=True),
    _d("u8", np.uint8, TensorProto.UINT8, "uint8", "uint8_t", 1, 8, is_quantized=True),
    _d("i16", np.int16, TensorProto.INT16, "int16", "int16_t", 0, 16, is_signed=True),
    _d("u16", np.uint16, TensorProto.UINT16, "uint16", "uint16_t", 1, 16),
    _d("i32", np.int32, TensorProto.INT32, "int32", "int32_t", 0, 32, is_signed=True),
    _d("u32", np.uint32, TensorProto.UINT32, "uint32", "uint32_t", 1, 32),
    _d("i64", np.int64, TensorProto.INT64, "int64", "int64_t", 0, 64, is_signed=True),
    _d("u64", np.uint64, TensorProto.UINT64, "uint64", "uint64_t", 1, 64),
    _d("bool", np.bool_, TensorProto.BOOL, "bool", "uint8_t", 6, 8),
]
DTYPE: dict[str, DType] = {d.name: d for d in _TABLE}
DTYPES = tuple(DTYPE)
FLOAT_DTYPES = tuple(d.name for d in _TABLE if d.is_float)
INT_DTYPES = tuple(d.name for d in _TABLE if d.is_int)
SIGNED_DTYPES = tuple(d.name for d in _TABLE if d.is_signed)
NUMERIC_DTYPES = INT_DTYPES + FLOAT_DTYPES
QUANTIZED_DTYPES = tuple(d.name for d in _TABLE if d.is_quantized)
_FROM_NUMPY = {d.numpy: d.name for d in _TABLE}
_FROM_ONNX = {d.onnx: d.name for d in _TABLE}
_FROM_TVM = {d.tvm: d.name for d in _TABLE}


def dtype_to_numpy(name: str) -> np.dtype:
    return DTYPE[name].numpy


def numpy_to_dtype(dt) -> str:
    try:
        return _FROM_NUMPY[np.dtype(dt)]
    except KeyError:
        raise ValueError(f"unsupported element type {np.dtype(dt)}") from None


def dtype_to_onnx(name: str) -> int:
    return DTYPE[name].onnx


def onnx_to_dtype(enum: int) -> str | None:
    """The IR name of an ONNX element type, or None when edgecc does not support it."""
    return _FROM_ONNX.get(enum)


def dtype_to_tvm(name: str) -> str:
    return DTYPE[name].tvm


def tvm_to_dtype(tvm_name: str) -> str:
    return _FROM_TVM[str(tvm_name)]


def is_float(name: str) -> bool:
    """Whether `name` (an IR short name or a TVM dtype string) is a floating-point type."""
    d = DTYPE.get(name) or DTYPE.get(_FROM_TVM.get(str(name), ""))
    return bool(d and d.is_float)
