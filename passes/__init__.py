"""Graph passes, one per file, named after the pass (`fuse-conv-bn` -> fuse_conv_bn.py).

A pass registers itself with one line (see edgecc.pass_manager):

    @register_pass
    @dataclass(frozen=True)
    class DCE:
        name = "dce"
        tolerance = 0.0               # max output drift it promises, relative to output scale
        def run(self, graph, ctx) -> bool: ...   # mutates graph, returns "changed"

Importing this package imports every module here not starting with "_", so adding a pass
touches only its own file (and its test).
"""
import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
