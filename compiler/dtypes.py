"""Element types: the IR's short names and their numpy / ONNX equivalents."""
import numpy as np
from onnx import TensorProto

_TABLE = [  # (short name, numpy dtype, ONNX enum)
    ("f32", np.float32, TensorProto.FLOAT),
    ("f16", np.float16, TensorProto.FLOAT16),
    ("f64", np.float64, TensorProto.DOUBLE),
    ("i8", np.int8, TensorProto.INT8),
    ("u8", np.uint8, TensorProto.UINT8),
    ("i16", np.int16, TensorProto.INT16),
    ("u16", np.uint16, TensorProto.UINT16),
    ("i32", np.int32, TensorProto.INT32),
    ("u32", np.uint32, TensorProto.UINT32),
    ("i64", np.int64, TensorProto.INT64),
    ("u64", np.uint64, TensorProto.UINT64),
    ("bool", np.bool_, TensorProto.BOOL),
]
DTYPES = tuple(name for name, _, _ in _TABLE)
_TO_NUMPY = {name: np.dtype(t) for name, t, _ in _TABLE}
_FROM_NUMPY = {np.dtype(t): name for name, t, _ in _TABLE}
_TO_ONNX = {name: e for name, _, e in _TABLE}
_FROM_ONNX = {e: name for name, _, e in _TABLE}
FLOAT_DTYPES = ("f16", "f32", "f64")


def dtype_to_numpy(name: str) -> np.dtype:
    return _TO_NUMPY[name]


def numpy_to_dtype(dt) -> str:
    try:
        return _FROM_NUMPY[np.dtype(dt)]
    except KeyError:
        raise ValueError(f"unsupported element type {np.dtype(dt)}") from None


def dtype_to_onnx(name: str) -> int:
    return _TO_ONNX[name]


def onnx_to_dtype(enum: int) -> str | None:
    """The IR name of an ONNX element type, or None when edgecc does not support it."""
    return _FROM_ONNX.get(enum)


def is_float(name: str) -> bool:
    return name in FLOAT_DTYPES
