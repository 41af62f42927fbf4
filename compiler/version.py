"""The edgecc version (a leaf: the report, the exporter and the bundle writer stamp it)."""
__version__ = "0.1.0"
