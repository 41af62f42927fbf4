"""User-facing errors. Each carries the exit code documented in CONTRACT.md.

Messages name the file/node/op, the rule that was broken and what the user can do about it.
The CLIs print `edgecc: error: <message>` and exit with `exit_code`; never a traceback.
"""


class EdgeccError(Exception):
    exit_code = 1

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class UsageError(EdgeccError):
    """Bad command line: unknown flag, missing file, bad --input-shape (exit 1)."""
    exit_code = 1


class ModelError(EdgeccError):
    """Unsupported or invalid model: the message names node, op and rule (exit 2)."""
    exit_code = 2


class UnsupportedOpsError(ModelError):
    """Every unsupported op of a model, reported at once."""

    def __init__(self, path: str, problems: list[str]):
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{path}: {len(problems)} node(s) cannot be imported:\n{lines}")


class NumericError(EdgeccError):
    """A numeric check failed: outputs differ beyond tolerance (exit 3)."""
    exit_code = 3


class ResourceError(EdgeccError):
    """A resource limit was exceeded, e.g. --max-arena (exit 4)."""
    exit_code = 4


INTERNAL_ERROR = 70   # a bug in edgecc, not in the user's input


def run_guarded(prog: str, command, argv: list[str]) -> int:
    """Run a CLI command: EdgeccErrors become `prog: error: ...` and their exit code; any other
    exception is reported as an internal error (exit 70) without a traceback unless
    EDGECC_DEBUG is set."""
    import os
    import sys
    try:
        return command(argv)
    except EdgeccError as e:
        print(f"{prog}: error: {e.message}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:                   # e.g. `edgecc-opt x.eir | head`
        sys.stderr.close()
        return 0
    except Exception as e:
        if os.environ.get("EDGECC_DEBUG"):
            raise
        print(f"{prog}: internal error: {type(e).__name__}: {e}\n(this is a bug in edgecc; "
              f"rerun with EDGECC_DEBUG=1 for a traceback and report it)", file=sys.stderr)
        return INTERNAL_ERROR
