"""edgecc: an ONNX compiler for edge devices.

    import edgecc
    art = edgecc.compile("model.onnx", target="x86_64", opt_level=3)
    outputs = art.run({"x": array})
    art = edgecc.load("model.x86_64/")
"""
from .version import __version__  # noqa: F401


def compile(model, target="x86_64", opt_level=3, outdir=None, input_shapes=None, **options):
    """Compile an ONNX model (same options as the CLI). Returns the loaded bundle for
    emit="bundle" (the default), else the path written."""
    from .driver import compile as _compile
    return _compile(model, target=target, opt_level=opt_level, outdir=outdir,
                    input_shapes=input_shapes, **options)


def load(path):
    """Load a bundle directory written by edgecc."""
    from .driver import load as _load
    return _load(path)
