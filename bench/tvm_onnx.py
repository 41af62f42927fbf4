"""TVM's own ONNX path, the second baseline of bench_latency.py.

    info = build(model_path, input_shapes, "squeezenet.so", timeout=600)   # in a subprocess
    if info["ok"]:
        m = TvmModel("squeezenet.so", input_names); outs = m.run(feeds)

The path is what a TVM 0.27 user gets without tuning: `relax.frontend.onnx.from_onnx` →
`tvm.compile(mod, target)` (the default Relax pipeline: legalize to TIR, no schedules, no
tuning database) for the same LLVM target edgecc uses on this host, run by the Relax
`VirtualMachine`. The build runs in a child process with a time limit: from_onnx rejects some
real models (unsupported op or attribute), and a build may take very long; either is a finding
recorded as the reason, not a benchmark error.

    python bench/tvm_onnx.py model.onnx out.so --input-shape x=1,3,224,224   # the child
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

PIPELINE = "tvm.compile default (relax.get_pipeline('default'), untuned)"


def build(model_path, input_shapes: dict, out_so, timeout: float = 600.0) -> dict:
    """Build in a child process: {"ok", "seconds", "error"}; never raises for a TVM failure."""
    cmd = [sys.executable, os.path.abspath(__file__), str(model_path), str(out_so)]
    for name, dims in input_shapes.items():
        cmd += ["--input-shape", f"{name}={','.join(map(str, dims))}"]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"ok": False, "seconds": round(time.perf_counter() - t0, 1),
                "error": f"build did not finish within the {timeout:g} s limit"}
    last = proc.stdout.strip().splitlines()[-1:] or [""]
    try:
        return json.loads(last[0])
    except ValueError:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"ok": False, "seconds": round(time.perf_counter() - t0, 1),
                "error": f"build process exited {proc.returncode}: {tail[:300]}"}


def set_num_threads(n: int) -> None:
    """TVM's thread pool size for the following runs (affinity mode 1 = big cores = all)."""
    import tvm_ffi
    tvm_ffi.get_global_func("runtime.config_threadpool")(1, int(n))


class TvmModel:
    """A module built by `build`, loaded in this process."""

    def __init__(self, so_path, input_names: list[str]):
        import tvm
        from tvm import relax
        self._tvm = tvm
        self.vm = relax.VirtualMachine(tvm.runtime.load_module(str(so_path)), tvm.cpu())
        self.main = self.vm["main"]
        self.input_names = list(input_names)

    def prepare(self, feeds: dict) -> list:
        """Inputs converted to TVM tensors once, so timing `call` measures only the model."""
        return [self._tvm.runtime.tensor(feeds[n]) for n in self.input_names]

    def call(self, args: list):
        return self.main(*args)

    def run(self, feeds: dict) -> list:
        out = self.call(self.prepare(feeds))
        outs = out if isinstance(out, (list, tuple)) or type(out).__name__ == "Array" else [out]
        return [o.numpy() for o in outs]


def _child(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("out_so")
    ap.add_argument("--input-shape", action="append", default=[])
    a = ap.parse_args(argv)
    from edgecc.driver import parse_input_shape
    shapes = {name: list(dims) for name, dims in map(parse_input_shape, a.input_shape)}
    t0 = time.perf_counter()
    stage = "import (relax.frontend.onnx.from_onnx)"
    try:
        import onnx
        import tvm
        from tvm.relax.frontend.onnx import from_onnx
        mod = from_onnx(onnx.load(a.model), shape_dict=shapes)
        stage = "build (tvm.compile)"
        from edgecc.target import host_target
        ex = tvm.compile(mod, host_target("x86_64").tvm)
        stage = "export_library"
        ex.export_library(a.out_so)
        res = {"ok": True, "seconds": round(time.perf_counter() - t0, 2), "error": None}
    except Exception as e:      # any TVM failure is the finding we record
        msg = " ".join(str(e).split())
        res = {"ok": False, "seconds": round(time.perf_counter() - t0, 2),
               "error": f"{stage}: {type(e).__name__}: {msg[:400]}"}
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(_child())
