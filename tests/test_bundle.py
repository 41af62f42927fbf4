"""The standalone bundle: C runtime, generated host code, build, and running it.

A small hand-built graph (Conv/Relu/MaxPool/Flatten/Gemm, a view between two caller buffers,
an i64 path, an intermediate that is also an output) is compiled once per target and checked
against the reference executor. Whole zoo models are tested in tests/test_models_e2e.py. arm64 bundles run
under qemu-aarch64 (marked qemu; skipped only when the tools are missing).
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgecc.backends.bundle.csrc import RUNTIME_SOURCES, api_symbols
from edgecc.backends.bundle.program import BundlePlan, make_program, misaligned_values
from edgecc.backends.bundle.runner import BundleRunError, load
from edgecc.backends.bundle.writer import RUNTIME_DIR, plan_bundle, write_bundle
from edgecc.backends.memory.plan import plan_graph
from edgecc.backends.tvm.build import KernelSet
from edgecc.backends.tvm.scratch import scan_workspace
from edgecc.errors import UsageError
from edgecc.ir import Graph, TensorType, Value
from edgecc.kernels.executor import run_graph
from edgecc.ops import build_op
from tests.targets import ARM64, AVX2, FAST

HAVE_QEMU = all(shutil.which(t) for t in ("qemu-aarch64", "aarch64-linux-gnu-gcc"))
needs_qemu = pytest.mark.skipif(not HAVE_QEMU, reason="qemu-aarch64 / aarch64-linux-gnu-gcc "
                                                      "not installed")


def small_graph() -> tuple[Graph, dict[str, np.ndarray]]:
    rng = np.random.default_rng(7)
    g = Graph("small")
    x = Value("x", TensorType("f32", (1, 3, 16, 16)))
    ids = Value("ids", TensorType("i64", (6,)))
    g.inputs += [x, ids]
    w = g.add_param("w", (rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32))
    b = g.add_param("b", rng.standard_normal(8).astype(np.float32))
    w2 = g.add_param("w2", (rng.standard_normal((512, 10)) * 0.05).astype(np.float32))
    conv = build_op("Conv", [x, w, b], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]},
                    name="conv", out_names=["c"])
    w3 = g.add_param("w3", (rng.standard_normal((4, 8, 1, 1)) * 0.3).astype(np.float32))
    w4 = g.add_param("w4", (rng.standard_normal((4, 8, 1, 1)) * 0.3).astype(np.float32))
    relu = build_op("Relu", [conv.output], name="relu", out_names=["r"])
    one = {"kernel_shape": [1, 1]}
    c2 = build_op("Conv", [relu.output, w3], one, name="conv2", out_names=["c2"])
    c3 = build_op("Conv", [relu.output, w4], one, name="conv3", out_names=["c3"])
    cat = build_op("Concat", [c2.output, c3.output], {"axis": 1}, name="cat", out_names=["cc"])
    pool = build_op("MaxPool", [cat.output], {"kernel_shape": [2, 2], "strides": [2, 2]},
                    name="pool", out_names=["p"])
    flat = build_op("Flatten", [pool.output], {"axis": 1}, name="flat", out_names=["f"])
    fc = build_op("Gemm", [flat.output, w2], name="fc", out_names=["y"])
    grid = build_op("Reshape", [ids], {"shape": [2, 3]}, name="grid", out_names=["ids2"])
    split = build_op("Split", [ids], {"axis": 0, "split": [2, 4]}, name="split",
                     out_names=["ida", "idb"])
    g.ops = [conv, relu, c2, c3, cat, pool, flat, fc, grid, split]
    g.outputs = [fc.output, relu.output, grid.output] + split.outputs
    feeds = {"x": rng.standard_normal((1, 3, 16, 16)).astype(np.float32),
             "ids": np.arange(6, dtype=np.int64) * 7 - 11}
    return g, feeds


def build(graph, target, outdir, name="small", threads=None):
    kernels = KernelSet(graph, target)
    plan = plan_bundle(graph, kernels, threads)
    lib = kernels.compile(Path(str(outdir) + ".kernels"), plan.scratch_free)
    return write_bundle(graph, lib, plan, outdir, target, name=name, threads=threads)


def assert_close(got, want, rel=1e-3):
    assert got.shape == want.shape and got.dtype == want.dtype
    scale = max(float(np.max(np.abs(want.astype(np.float64)))), 1e-30) if want.size else 1
    err = float(np.max(np.abs(got.astype(np.float64) - want))) if want.size else 0.0
    assert err <= rel * scale, f"max abs error {err} > {rel} x scale {scale}"


@pytest.fixture(scope="module")
def small():
    return small_graph()


@pytest.fixture(scope="module")
def x86_bundle(small, tmp_path_factory):
    g, _ = small
    return build(g, FAST, tmp_path_factory.mktemp("b") / "small.x86_64", threads=3)


# ---- the C runtime on its own ----------------------------------------------------------------

@pytest.mark.parametrize("cc", ["gcc", "aarch64-linux-gnu-gcc"])
def test_runtime_is_warning_free_c99(cc, tmp_path):
    if not shutil.which(cc):
        pytest.skip(f"{cc} not installed")
    for src in RUNTIME_SOURCES:
        subprocess.run([cc, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-fPIC", "-c",
                        str(RUNTIME_DIR / src), "-o", str(tmp_path / (src + ".o"))], check=True)


def test_scan_workspace_top_and_parallel_tasks():
    alloc = "T.decl_buffer((3,), data=T.TVMBackendAllocWorkspace(1, dev_id, T.uint64({}), 2, 32))"
    script = f"""
    def k(A: T.handle):
        buf = {alloc.format(4000)}
        for i in T.parallel(8):
            t = {alloc.format(100)}
            u = {alloc.format(65)}
        for j in T.parallel(8):
            v = {alloc.format(300)}
        done = 1
    """
    ws = scan_workspace(script)
    assert ws.top == 4032                       # 4000 rounded up to 64
    assert ws.per_task == 320                   # max(128 + 128, 320)
    assert ws.bytes(4) == 4032 + 4 * 320


# ---- x86_64: in-process ----------------------------------------------------------------------

def test_x86_bundle_matches_reference(small, x86_bundle):
    g, feeds = small
    want = run_graph(g, feeds)
    b = load(x86_bundle)
    assert b.in_process and b.output_names == ["y", "r", "ids2", "ida", "idb"]
    for _ in range(2):                          # state does not leak between runs
        got = b.run(feeds)
        for o, w in zip(got, want):
            assert_close(o, w)
    np.testing.assert_array_equal(got[2], feeds["ids"].reshape(2, 3))
    np.testing.assert_array_equal(got[4], feeds["ids"][2:])


def test_poisoned_arena_gives_identical_outputs(small, x86_bundle):
    g, feeds = small
    clean = load(x86_bundle).run(feeds)
    poisoned = load(x86_bundle, poison_arena=True).run([feeds["x"], feeds["ids"]])
    for a, p in zip(clean, poisoned):
        np.testing.assert_array_equal(a, p)


def test_inputs_are_checked(small, x86_bundle):
    _, feeds = small
    b = load(x86_bundle)
    with pytest.raises(UsageError, match="missing"):
        b.run({"x": feeds["x"]})
    with pytest.raises(UsageError, match="shape"):
        b.run({"x": feeds["x"][:, :2], "ids": feeds["ids"]})
    # an unaligned, non-contiguous input is copied, not rejected
    xs = np.zeros((1, 3, 16, 32), np.float32)
    xs[..., ::2] = feeds["x"]
    got = b.run({"x": xs[..., ::2], "ids": feeds["ids"].astype(np.int32)})
    np.testing.assert_array_equal(got[0], b.run(feeds)[0])


def test_c_api_rejects_misaligned_pointers(small, x86_bundle):
    _, feeds = small
    so = ctypes.CDLL(str(x86_bundle / "libsmall.so"))
    so.small_last_error.restype = ctypes.c_char_p
    meta = json.loads((x86_bundle / "bundle.json").read_text())
    arena = np.zeros(meta["arena_bytes"] + 128, np.uint8)
    base = arena.ctypes.data + (-arena.ctypes.data % 64)
    x = np.zeros(feeds["x"].nbytes + 128, np.uint8)
    xp = x.ctypes.data + (-x.ctypes.data % 64)
    outs = [np.zeros(o["bytes"] + 128, np.uint8) for o in meta["outputs"]]
    optr = [o.ctypes.data + (-o.ctypes.data % 64) for o in outs]
    ins = (ctypes.c_void_p * 2)(xp + 4, xp)
    rc = so.small_run(ins, (ctypes.c_void_p * 5)(*optr), ctypes.c_void_p(base))
    assert rc == -2 and b"input 0 'x' is not 64-byte aligned" in so.small_last_error()
    ins = (ctypes.c_void_p * 2)(xp, xp)
    assert so.small_run(ins, (ctypes.c_void_p * 5)(*optr), ctypes.c_void_p(0)) == -2
    assert b"arena is NULL" in so.small_last_error()


def test_bundle_files_header_and_exports(small, x86_bundle):
    g, _ = small
    names = {p.name for p in x86_bundle.iterdir()}
    assert {"model.h", "model.c", "libsmall.a", "libsmall.so", "Makefile", "CMakeLists.txt",
            "example.c", "bundle.json", "small_weights.bin", "small_weights.S",
            "kernels.o"} <= names
    assert not any(n.endswith(".o") and n != "kernels.o" for n in names)   # no build leftovers
    h = (x86_bundle / "model.h").read_text()
    meta = json.loads((x86_bundle / "bundle.json").read_text())
    for line in [f"#define SMALL_ARENA_BYTES  {meta['arena_bytes']}",
                 "#define SMALL_NUM_INPUTS   2", "#define SMALL_NUM_OUTPUTS  5",
                 "#define SMALL_INPUT_0_SHAPE {1, 3, 16, 16}", '#define SMALL_INPUT_1_DTYPE "i64"',
                 "int small_run(const void *const *inputs, void *const *outputs, void *arena);",
                 "void small_set_num_threads(int n);"]:
        assert line in h
    assert meta["target"] == "x86_64" and meta["arena_bytes"] % 64 == 0
    assert [i["name"] for i in meta["inputs"]] == ["x", "ids"]
    # only the API is global in both libraries (several bundles can share a program)
    nm = subprocess.run(["nm", "-g", "--defined-only", str(x86_bundle / "libsmall.a")],
                        capture_output=True, text=True, check=True).stdout
    assert sorted(ln.split()[-1] for ln in nm.splitlines() if ln.count(" ") == 2) == \
        sorted(api_symbols("small") + ["small_weights"])
    nm = subprocess.run(["nm", "-D", "--defined-only", str(x86_bundle / "libsmall.so")],
                        capture_output=True, text=True, check=True).stdout
    assert sorted(ln.split()[-1] for ln in nm.splitlines()) == sorted(api_symbols("small"))
    # the weights blob holds each used param, 64-byte aligned, in graph order
    blob = (x86_bundle / "small_weights.bin").read_bytes()
    assert blob[:g.params[0].type.nbytes] == g.params[0].data.tobytes()
    assert len(blob) == sum(-(-p.type.nbytes // 64) * 64 for p in g.params)


def test_two_builds_are_byte_identical(small, x86_bundle, tmp_path):
    g, _ = small
    again = build(g, FAST, tmp_path / "again", threads=3)
    digest = lambda d: {p.name: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
                        for p in sorted(d.iterdir())}
    assert digest(again) == digest(x86_bundle)


def test_example_links_with_only_a_c_compiler(small, x86_bundle, tmp_path):
    g, feeds = small
    exe = tmp_path / "example"
    subprocess.run(["gcc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-I",
                    str(x86_bundle), str(x86_bundle / "example.c"),
                    str(x86_bundle / "libsmall.a"), "-lpthread", "-lm", "-o", str(exe)],
                   check=True)
    ins = [tmp_path / "x.raw", tmp_path / "ids.raw"]
    outs = [tmp_path / f"o{i}.raw" for i in range(5)]
    feeds["x"].tofile(ins[0])
    feeds["ids"].tofile(ins[1])
    proc = subprocess.run([str(exe), "-t", "2", "-r", "3", *map(str, ins), *map(str, outs)],
                          capture_output=True, text=True, check=True)
    assert "3 run(s)" in proc.stderr and "2 thread(s)" in proc.stderr
    want = run_graph(g, feeds)
    for f, w in zip(outs, want):
        assert_close(np.fromfile(f, w.dtype).reshape(w.shape), w)
    bad = subprocess.run([str(exe), str(ins[0])], capture_output=True, text=True)
    assert bad.returncode == 2 and "input  0 'x': f32, 3072 bytes" in bad.stderr


def test_two_bundles_link_into_one_program(small, x86_bundle, tmp_path):
    g = Graph("two")
    x = Value("x", TensorType("f32", (4,)))
    g.inputs = [x]
    relu = build_op("Relu", [x], name="relu", out_names=["y"])
    g.ops, g.outputs = [relu], [relu.output]
    two = build(g, FAST, tmp_path / "two", name="two")
    (tmp_path / "main.c").write_text(r"""
#include <stdio.h>
#include <stdlib.h>
#include "small/model.h"
#include "two/model.h"
int main(void) {
  static float x[4] __attribute__((aligned(64))) = {-1, 2, -3, 4};
  static float y[4] __attribute__((aligned(64)));
  static unsigned char arena[TWO_ARENA_BYTES + 64] __attribute__((aligned(64)));
  const void *in[1] = {x};
  void *out[1] = {y};
  if (two_run(in, out, arena) != 0) return 1;
  printf("%s %g %g %d\n", small_input_names[0], y[0], y[3], SMALL_NUM_OUTPUTS);
  return 0;
}
""")
    (tmp_path / "small").symlink_to(x86_bundle)
    exe = tmp_path / "app"
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Werror", "-I", str(tmp_path),
                    str(tmp_path / "main.c"), str(x86_bundle / "libsmall.a"),
                    str(two / "libtwo.a"), "-lpthread", "-lm", "-o", str(exe)], check=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    assert out == "x 0 4 5\n"


def test_makefile_rebuilds_the_libraries(x86_bundle, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(x86_bundle, copy)
    for lib in ("libsmall.a", "libsmall.so"):
        (copy / lib).unlink()
    subprocess.run(["make", "-s", "-C", str(copy), "WERROR=-Werror", "all", "example"],
                   check=True, capture_output=True)
    for lib in ("libsmall.a", "libsmall.so"):     # same flags, same bytes
        assert (copy / lib).read_bytes() == (x86_bundle / lib).read_bytes()


@pytest.mark.skipif(not shutil.which("cmake"), reason="cmake not installed")
def test_cmake_snippet_links_an_app(x86_bundle, tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    (app / "main.c").write_text(
        '#include "model.h"\n#include <stdio.h>\n'
        'int main(void) { printf("%d %s\\n", SMALL_NUM_OUTPUTS, small_input_names[0]);'
        ' return 0; }\n')
    (app / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.13)\nproject(app C)\n"
        f"add_subdirectory({x86_bundle} edgecc_small)\n"
        "add_executable(app main.c)\ntarget_link_libraries(app PRIVATE edgecc::small)\n")
    subprocess.run(["cmake", "-S", str(app), "-B", str(app / "build")], check=True,
                   capture_output=True)
    subprocess.run(["cmake", "--build", str(app / "build")], check=True, capture_output=True)
    out = subprocess.run([str(app / "build" / "app")], capture_output=True, text=True,
                         check=True).stdout
    assert out == "5 x\n"


@pytest.mark.skipif(not shutil.which("cmake"), reason="cmake not installed")
def test_cmake_builds_the_bundle_standalone(small, x86_bundle, tmp_path):
    """`cmake -S <bundle> -B build` builds lib<id>.a from the sources (exporting only the API)
    and the example runner, which computes what the reference executor does."""
    g, feeds = small
    build_dir = tmp_path / "build"
    subprocess.run(["cmake", "-S", str(x86_bundle), "-B", str(build_dir)], check=True,
                   capture_output=True)
    subprocess.run(["cmake", "--build", str(build_dir)], check=True, capture_output=True)
    syms = subprocess.run(["nm", "-g", "--defined-only", str(build_dir / "libsmall.a")],
                          capture_output=True, text=True, check=True).stdout.split()
    exported = {t for t in syms if t.startswith(("small_", "edgecc_", "TVM"))
                and not t.endswith(":")}                  # (nm's member headers)
    assert exported == set(api_symbols("small")) | {"small_weights"}
    ins = [tmp_path / "x.raw", tmp_path / "ids.raw"]
    outs = [tmp_path / f"o{i}.raw" for i in range(5)]
    feeds["x"].tofile(ins[0])
    feeds["ids"].tofile(ins[1])
    subprocess.run([str(build_dir / "example"), *map(str, ins), *map(str, outs)],
                   capture_output=True, check=True)
    for f, w in zip(outs, run_graph(g, feeds)):
        assert_close(np.fromfile(f, w.dtype).reshape(w.shape), w)
    assert "linked into libsmall.a" in (x86_bundle / "model.h").read_text()


def _task_count() -> int:
    return len(os.listdir("/proc/self/task"))


def test_set_num_threads_starts_workers_and_keeps_results(small, x86_bundle, tmp_path):
    g, feeds = small
    shutil.copytree(x86_bundle, tmp_path / "copy")    # a new file: its own runtime and pool
    b = load(tmp_path / "copy")
    b.set_num_threads(1)
    assert b.num_threads() == 1
    one = b.run(feeds)
    before = _task_count()
    b.set_num_threads(3)
    assert b.num_threads() == 3
    assert _task_count() == before + 2          # two workers + the caller
    three = b.run(feeds)
    for a, c in zip(one, three):
        np.testing.assert_array_equal(a, c)
    b.set_num_threads(12)                       # more threads than scratch slices planned
    for a, c in zip(one, b.run(feeds)):
        np.testing.assert_array_equal(a, c)
    b.set_num_threads(None)                     # back to the default: --threads 3
    assert b.num_threads() == 3


def test_forked_child_runs_without_the_parents_workers(x86_bundle):
    code = """if True:
        import os, sys, numpy as np
        from edgecc.backends.bundle.runner import load
        b = load(sys.argv[1]); b.set_num_threads(3)
        feeds = [np.ones((1, 3, 16, 16), np.float32), np.arange(6)]
        want = b.run(feeds)
        pid = os.fork()
        if pid == 0:
            import signal; signal.alarm(60)     # a deadlocked child must not outlive us
            got = b.run(feeds)
            os._exit(0 if all(np.array_equal(g, w) for g, w in zip(got, want)) else 1)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
    """
    out = subprocess.run([sys.executable, "-c", code, str(x86_bundle)], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    assert out.split() == ["0"]


def test_library_needs_no_heap_and_no_tvm_runtime(x86_bundle):
    """The only undefined symbols are libc/libm/pthread basics: no malloc family, no TVM."""
    nm = subprocess.run(["nm", "-u", str(x86_bundle / "libsmall.a")], capture_output=True,
                        text=True, check=True).stdout
    undefined = {ln.split()[-1] for ln in nm.splitlines() if ln.strip().startswith("U ")}
    undefined -= {"small_weights"}              # defined by the archive's weights member
    assert not undefined & {"malloc", "calloc", "realloc", "free", "aligned_alloc",
                            "posix_memalign", "mmap"}
    assert not any("TVM" in u or "tvm" in u for u in undefined)
    allowed = {"memcpy", "memset", "memmove", "strlen", "strtol", "getenv", "sysconf",
               "vsnprintf", "__tls_get_addr", "_GLOBAL_OFFSET_TABLE_"}
    unexpected = {u for u in undefined - allowed
                  if not u.startswith(("pthread_", "__", "exp", "log", "pow", "sqrt", "tanh",
                                       "sin", "cos", "erf", "floor", "ceil", "round", "fabs",
                                       "fmod", "trunc", "nearbyint"))}
    assert not unexpected


def test_pool_is_stable_over_many_runs_and_concurrent_callers(small, x86_bundle):
    import threading
    _, feeds = small
    b = load(x86_bundle)
    b.set_num_threads(4)
    want = b.run(feeds)
    for _ in range(100):
        assert all(np.array_equal(g, w) for g, w in zip(b.run(feeds), want))
    bad = []

    def caller():                                # runs of one model are serialized in C
        for _ in range(30):
            if not all(np.array_equal(g, w) for g, w in zip(b.run(feeds), want)):
                bad.append(1)
    threads = [threading.Thread(target=caller) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not bad


@pytest.mark.skipif(not shutil.which("valgrind"), reason="valgrind not installed")
def test_runs_allocate_nothing_and_touch_no_bad_memory(small, tmp_path):
    """Under valgrind (kernels built without AVX-512, which it cannot run): no memory errors,
    and 1 or 20 runs (3 threads, poisoned arena) make the same number of heap allocations."""
    g, feeds = small
    out = build(g, AVX2, tmp_path / "vg")
    subprocess.run(["make", "-s", "-C", str(out), "example"], check=True, capture_output=True)
    files = [tmp_path / "x.raw", tmp_path / "ids.raw"] + [tmp_path / f"o{i}" for i in range(5)]
    feeds["x"].tofile(files[0])
    feeds["ids"].tofile(files[1])
    allocs = []
    for repeats in (1, 20):
        proc = subprocess.run(["valgrind", "--error-exitcode=9", str(out / "example"), "-t", "3",
                               "-p", "1", "-r", str(repeats), *map(str, files)],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
        allocs.append(re.search(r"total heap usage: ([\d,]+) allocs", proc.stderr).group(1))
    assert allocs[0] == allocs[1]


def test_env_var_overrides_the_default_thread_count(x86_bundle):
    code = ("import sys; from edgecc.backends.bundle.runner import load; "
            "b = load(sys.argv[1]); print(b.num_threads()); b.set_num_threads(1); "
            "print(b.num_threads())")
    env = {**os.environ, "EDGECC_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", code, str(x86_bundle)], env=env,
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["2", "1"]                    # env beats --threads; set_num_threads beats env
    env.pop("EDGECC_NUM_THREADS")
    out = subprocess.run([sys.executable, "-c", code, str(x86_bundle)], env=env,
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["3", "1"]                    # --threads 3, before any run


def test_missing_workspace_is_reported_not_corrupting(small, tmp_path):
    """A kernel asking for more scratch than planned fails with a message naming it."""
    g, feeds = small
    kernels = KernelSet(g, FAST)
    lib = kernels.compile(tmp_path / "k")
    plan = plan_bundle(g, kernels)
    assert plan.workspace, "the test graph must have a kernel that uses scratch"
    starved = BundlePlan(plan_graph(g), {}, 1)      # reserves no scratch at all
    out = write_bundle(g, lib, starved, tmp_path / "starved", FAST, name="starved")
    with pytest.raises(BundleRunError, match=r"kernel \d+ '\w+' \(\w+\): .*more workspace"):
        load(out).run(feeds)


def test_outputs_stored_elsewhere_are_copied(tmp_path):
    """Outputs that are an input, a weight, a view of an input, or repeated: memcpy steps."""
    g = Graph("edge")
    x = Value("x", TensorType("f32", (2, 3)))
    g.inputs = [x]
    c = g.add_param("c", np.arange(4, dtype=np.float32))
    u = build_op("Unsqueeze", [x], {"axes": [0]}, name="u", out_names=["xu"])
    g.ops = [u]
    g.outputs = [x, c, u.output, x, u.output]
    out = build(g, FAST, tmp_path / "edge", name="edge")
    feeds = {"x": np.arange(6, dtype=np.float32).reshape(2, 3)}
    for got, want in zip(load(out, poison_arena=True).run(feeds), run_graph(g, feeds)):
        np.testing.assert_array_equal(got, want)
    assert json.loads((out / "bundle.json").read_text())["kernels"] == 0


def test_concat_slices_stay_64_byte_aligned(tmp_path):
    """Kernels use aligned vector stores: a Concat operand 300 bytes into the result must not
    be written in place there (the planner's concat elimination is undone for such graphs)."""
    rng = np.random.default_rng(3)
    g = Graph("odd")
    x = Value("x", TensorType("f32", (1, 3, 5, 5)))
    y = Value("y", TensorType("f32", (1, 16, 5, 5)))
    g.inputs = [x, y]
    wm = g.add_param("wm", rng.standard_normal((1, 16, 5, 5)).astype(np.float32))
    a = build_op("Relu", [x], name="a", out_names=["a"])
    b = build_op("Mul", [y, wm], name="b", out_names=["b"])
    c = build_op("Concat", [a.output, b.output], {"axis": 1}, name="c", out_names=["c"])
    d = build_op("Relu", [c.output], name="d", out_names=["d"])
    g.ops, g.outputs = [a, b, c, d], [d.output]
    assert plan_graph(g).sub_offsets.get("b", 0) % 64      # what the planner would do
    plan = plan_bundle(g, KernelSet(g, FAST))
    assert not misaligned_values(g, plan.memory)
    with pytest.raises(ValueError, match="64-byte alignment"):
        make_program(g, None, BundlePlan(plan_graph(g), {}, 1))
    out = build(g, FAST, tmp_path / "odd", name="odd")
    feeds = {"x": rng.standard_normal((1, 3, 5, 5)).astype(np.float32),
             "y": rng.standard_normal((1, 16, 5, 5)).astype(np.float32)}
    np.testing.assert_allclose(load(out, poison_arena=True).run(feeds)[0],
                               run_graph(g, feeds)[0], rtol=1e-6)


# ---- writing the directory -------------------------------------------------------------------

def test_failed_build_leaves_existing_bundle_untouched(small, x86_bundle, tmp_path):
    g, _ = small
    dest = tmp_path / "dest"
    shutil.copytree(x86_bundle, dest)
    before = {p.name: p.read_bytes() for p in dest.iterdir()}
    kernels = KernelSet(g, FAST)
    plan = plan_bundle(g, kernels, 3)
    lib = kernels.compile(tmp_path / "k", plan.scratch_free)
    lib.objects[0].write_bytes(b"not an object file")
    with pytest.raises(RuntimeError, match="building the bundle failed"):
        write_bundle(g, lib, plan, dest, FAST, name="small", threads=3)
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest", "k"]   # no temp dirs left


def test_rebuilt_bundle_at_the_same_path_loads_the_new_code(tmp_path):
    x = np.array([-1.0, 0.5, 2.0, -3.0], np.float32)
    results = []
    for kind in ("Relu", "Neg"):
        g = Graph("same")
        v = Value("x", TensorType("f32", (4,)))
        g.inputs = [v]
        op = build_op(kind, [v], name="k", out_names=["y"])
        g.ops, g.outputs = [op], [op.output]
        out = build(g, FAST, tmp_path / "same", name="same")
        results.append(load(out).run([x])[0])      # the first library stays loaded
    np.testing.assert_array_equal(results[0], np.maximum(x, 0))
    np.testing.assert_array_equal(results[1], -x)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".kernels")) == \
        ["same"]                                 # the old directory was swapped out


def test_unwritable_destination_is_a_usage_error(small, tmp_path):
    g, _ = small
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UsageError, match="cannot write the bundle"):
        write_bundle(g, None, BundlePlan(plan_graph(g), {}, 1), blocker / "sub" / "out",
                     FAST)


def test_refuses_to_replace_a_directory_that_is_not_a_bundle(small, tmp_path):
    g, _ = small
    home = tmp_path / "mine"
    home.mkdir()
    (home / "notes.txt").write_text("precious")
    with pytest.raises(UsageError, match="not an edgecc bundle"):
        write_bundle(g, None, BundlePlan(plan_graph(g), {}, 1), home, FAST)
    assert (home / "notes.txt").read_text() == "precious"


# ---- arm64 under qemu ------------------------------------------------------------------------

@pytest.mark.qemu
@needs_qemu
def test_arm64_bundle_under_qemu(small, tmp_path):
    g, feeds = small
    out = build(g, ARM64, tmp_path / "small.arm64")
    again = build(g, ARM64, tmp_path / "again")
    for f in out.iterdir():                     # cross builds are deterministic too
        assert f.read_bytes() == (again / f.name).read_bytes(), f.name
    assert json.loads((out / "bundle.json").read_text())["triple"] == "aarch64-linux-gnu"
    elf = subprocess.run(["readelf", "-h", str(out / "libsmall.so")], capture_output=True,
                         text=True).stdout
    assert "AArch64" in elf
    b = load(out, poison_arena=True)
    assert not b.in_process
    want = run_graph(g, feeds)
    for threads in (1, 3):
        b.set_num_threads(threads)
        got = b.run(feeds)
        assert f"{threads} thread(s)" in b.last_log
        for o, w in zip(got, want):
            assert_close(o, w)
