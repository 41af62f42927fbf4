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
