"""`edgecc-opt`: run passes on a text-IR file and print the result (see CONTRACT.md).

With no -p (and no -O), the file is parsed, checked and printed unchanged: print -> parse ->
print is the identity. Params read their data from `<stem>.weights.npz` beside the file when
it exists, else from a generator seeded by each param's name (see edgecc.textir).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from .errors import EdgeccError, NumericError, UsageError, run_guarded


EPILOG = """\
examples:
  edgecc-opt model.eir                                   parse, check, print unchanged
  edgecc-opt model.eir -p eliminate-identity,dce         run two passes, print the result
  edgecc-opt model.eir -p 'fuse-kernels{max_ops=4}'      a pass with options
  edgecc-opt model.eir -O3 --check-numerics              the -O3 pipeline, each pass checked
  edgecc-opt model.eir -O3 --bisect                      find the first pass that breaks it
  edgecc-opt model.eir -p dce --print-after=dce -o out.eir

exit codes: 0 ok, 1 usage error, 2 invalid IR (file:line:col: message), 3 numeric check
            failed, 70 internal error (please report)
"""


class _Parser(argparse.ArgumentParser):
    """argparse exits with 2 on usage errors; the contract says 1."""

    def error(self, message):
        raise UsageError(f"{message}\n(see '{self.prog} --help')")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="edgecc-opt", description="Parse an edgecc text-IR file (.eir), run "
                "passes on it and print the resulting IR.", epilog=EPILOG,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", nargs="?", help="the .eir file ('-' reads stdin)")
    p.add_argument("-p", "--passes", action="append", default=[], metavar="PASS[,PASS...]",
                   help="passes to run in order, each 'name' or 'name{opt=value,...}'; "
                        "repeatable")
    for level in range(4):
        p.add_argument(f"-O{level}", dest="opt_level", action="store_const", const=level,
                       help=f"run the -O{level} pipeline (before any -p passes)")
    p.add_argument("--check-numerics", action="store_true",
                   help="run the reference executor on seeded inputs before the passes and "
                        "after each one; fail (exit 3) naming the pass that drifted")
    p.add_argument("--bisect", action="store_true",
                   help="if the pipeline's outputs differ from the input graph's, find the "
                        "first pass responsible (exit 3 naming it)")
    p.add_argument("--seed", type=int, default=0, help="seed of the numeric check inputs")
    p.add_argument("--print-after-all", action="store_true",
                   help="print the IR after every pass (to stderr)")
    p.add_argument("--print-after", action="append", default=[], metavar="PASS",
                   help="print the IR after the named pass (to stderr); repeatable")
    p.add_argument("--weights", metavar="FILE.npz",
                   help="weights to use (default: <stem>.weights.npz beside the file if any)")
    p.add_argument("-o", "--output", metavar="OUT.eir",
                   help="write the IR here (and OUT.weights.npz beside it) instead of stdout")
    p.add_argument("--split-input-file", action="store_true",
                   help="treat '// -----' lines as separators of independent cases; outputs "
                        "are joined with '// -----'")
    p.add_argument("--verify-diagnostics", action="store_true",
                   help="check errors against '// expected-error [@+N] {{message}}' comments "
                        "instead of failing on them (exit 1 on any mismatch)")
    p.add_argument("--target", default=None, choices=["x86_64", "arm64"],
                   help="the target target-dependent passes build for (convert-layout blocks "
                        "by its f32 vector lanes; default: this machine's architecture)")
    p.add_argument("--mcpu", help="target CPU (default: this machine's for x86_64, generic "
                   "NEON for arm64)")
    p.add_argument("--mattr", action="append", help="target features, e.g. +dotprod")
    p.add_argument("--remarks", action="store_true",
                   help="print why passes refused rewrites (stderr, one line each)")
    p.add_argument("--list-passes", action="store_true",
                   help="list the passes and the -O pipelines, then exit")
    p.add_argument("--list-ops", action="store_true",
                   help="print the op reference (operands, attributes, traits, semantics of "
                        "every op, from their declarations) as Markdown, then exit")
    return p


def _read(args) -> tuple[str, str, dict | None]:
    """(text, filename for messages, weights or None)."""
    import numpy as np
    from .textir import weights_path
    if args.file == "-":
        text, filename, wpath = sys.stdin.read(), "<stdin>", None
    else:
        path = Path(args.file)
        if not path.is_file():
            raise UsageError(f"{args.file}: no such file")
        try:
            text = path.read_text()
        except UnicodeDecodeError as e:
            raise UsageError(f"{args.file}: not a text file ({e.reason})") from None
        filename, wpath = args.file, weights_path(path)
    if args.weights:
        wpath = Path(args.weights)
        if not wpath.is_file():
            raise UsageError(f"--weights {args.weights}: no such file")
    weights = None
    if wpath is not None and wpath.is_file():
        try:
            with np.load(wpath, allow_pickle=False) as npz:
                weights = {k: npz[k] for k in npz.files}
        except Exception as e:  # numpy raises several types for a bad file
            raise UsageError(f"{wpath}: not a weights .npz ({type(e).__name__}: {e})") from None
    return text, filename, weights


# ---- --split-input-file and --verify-diagnostics ----------------------------------------------

_SPLIT = re.compile(r"^// -----\s*$", re.M)
_EXPECT = re.compile(r"//\s*expected-error(?:\s*@([+-]\d+))?\s*\{\{(.*?)\}\}")


def split_chunks(text: str) -> list[str]:
    """Cases separated by `// -----` lines; each padded with blank lines so that line numbers
    in messages are those of the whole file."""
    chunks, line = [], 0
    for part in _SPLIT.split(text):
        chunks.append("\n" * line + part)
        line += part.count("\n")
    return chunks


def expected_errors(text: str) -> list[tuple[int, str]]:
    """`// expected-error {{msg}}` (this line) or `// expected-error @+1 {{msg}}` (the next):
    (line, message fragment) pairs."""
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        for m in _EXPECT.finditer(line):
            out.append((i + int(m.group(1) or 0), m.group(2)))
    return out


class DiagnosticsMismatch(EdgeccError):
    """--verify-diagnostics found unexpected or missing errors (exit 1, like a failed test)."""
    exit_code = 1


def _verify_diagnostics(chunk: str, filename: str, run_chunk) -> list[str]:
    """Run one case; returns the problems: an unexpected error, expected ones that did not
    occur. A case stops at its first error, so it can expect one error."""
    expected = expected_errors(chunk)
    problems = []
    try:
        run_chunk()
    except EdgeccError as e:
        m = re.match(re.escape(filename) + r":(\d+):\d+: (.*)", e.message, re.S)
        hit = next((x for x in expected
                    if m and x[0] == int(m.group(1)) and x[1] in m.group(2)), None)
        if hit is None:
            problems.append(f"unexpected error: {e.message}")
        else:
            expected.remove(hit)
    return problems + [f"{filename}:{line}: expected error did not occur: {msg}"
                       for line, msg in expected]


# ---- the command ------------------------------------------------------------------------------

def run(argv: list[str]) -> int:
    from .pass_manager import (PassContext, PassManager, bisect, describe_pipelines,
                               parse_pipeline, pipeline)
    from .textir import parse_graph, print_graph, save_module
    args = _parser().parse_args(argv)
    if args.list_passes:
        print(describe_pipelines())
        return 0
    if args.list_ops:
        from .ops.reference import op_reference
        print(op_reference())
        return 0
    if not args.file:
        raise UsageError("no input file (see 'edgecc-opt --help')")
    if args.output and args.split_input_file:
        raise UsageError("-o writes one module; it cannot be combined with --split-input-file")
    passes = pipeline(args.opt_level) if args.opt_level is not None else []
    for spec in args.passes:
        passes += parse_pipeline(spec)
    print_after = {n.strip() for spec in args.print_after for n in spec.split(",") if n.strip()}
    text, filename, weights = _read(args)
    from .driver import Options, resolve_target
    from .target import host_arch
    target = resolve_target(Options(target=args.target or host_arch() or "x86_64",
                                    mcpu=args.mcpu, mattr=args.mattr))
    ctx_for = lambda: PassContext(stream=sys.stderr, target=target)  # noqa: E731

    def process(chunk: str) -> str:
        graph = parse_graph(chunk, filename, weights)
        if args.bisect:
            bad = bisect(graph, passes, seed=args.seed, ctx=ctx_for())
            if bad is not None:
                raise NumericError(str(bad))
            print(f"edgecc-opt: bisect: all {len(passes)} pass(es) match the input graph",
                  file=sys.stderr)
        pm = PassManager(passes, print_after_all=args.print_after_all,
                         print_after=print_after, check_numerics=args.check_numerics,
                         stream=sys.stderr, seed=args.seed, ctx=ctx_for())
        graph = pm.run(graph)
        if args.remarks:
            for pass_name, where, reason in pm.ctx.refusals:
                print(f"remark: {pass_name}: {where}: {reason}", file=sys.stderr)
        if args.output:
            save_module(graph, args.output)
            return ""
        return print_graph(graph)

    chunks = split_chunks(text) if args.split_input_file else [text]
    outputs, problems = [], []
    for chunk in chunks:
        if args.verify_diagnostics:
            problems += _verify_diagnostics(chunk, filename,
                                            lambda c=chunk: outputs.append(process(c)))
        else:
            outputs.append(process(chunk))
    sys.stdout.write("// -----\n".join(outputs))
    if problems:
        raise DiagnosticsMismatch("--verify-diagnostics:\n" + "\n".join(problems))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_guarded("edgecc-opt", run, list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
