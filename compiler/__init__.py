"""edgecc: an ONNX compiler for edge devices."""
__version__ = "0.1.0"
