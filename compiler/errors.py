"""User-facing errors. Each carries the exit code documented in CONTRACT.md.

Messages name the file/node/op, the rule that was broken and what the user can do about it.
The CLIs print `edgecc: error: <message>` and exit with `exit_code`; never a traceback.
"""


import contextvars

# Which front end the user is driving: option names in messages are spelled its way
# (`--input-shape x=1,3,224,224` on the command line, `input_shapes={'x': (1, 3, 224, 224)}`
# from Python). The CLIs set "cli" for the duration of a command (run_guarded).
FRONT_END = contextvars.ContextVar("edgecc_front_end", default="python")

_CLI_FLAGS = {"input_shapes": "--input-shape", "opt_level": "-O", "emit": "--emit",
              "name": "--name", "threads": "--threads", "max_arena": "--max-arena",
              "tune": "--tune", "tuning_cache": "--tuning-cache", "mcpu": "--mcpu",
              "mattr": "--mattr", "print_after": "--print-after", "target": "--target",
              "inputs": "--input", "int8": "--int8", "calib": "--calib",
              "calib_method": "--calib-method", "int8_min_sqnr": "--int8-min-sqnr"}


def option(name: str, value=None) -> str:
    """Option `name` (the Python keyword) as the user spells it, with `value` if given.
    input_shapes takes {input: dims} (dims may hold placeholders like '<d2>')."""
    cli = FRONT_END.get() == "cli"
    if name == "input_shapes" and isinstance(value, dict):
        if cli:
            return " ".join(f"--input-shape {k}={','.join(map(str, d))}"
                            for k, d in value.items())
        shown = ", ".join(f"{k!r}: ({', '.join(map(str, d))}{',' if len(d) == 1 else ''})"
                          for k, d in value.items())
        return f"input_shapes={{{shown}}}"
    if not cli:
        return name if value is None else f"{name}={value!r}"
    flag = _CLI_FLAGS.get(name, "--" + name.replace("_", "-"))
    if value is None:
        return flag
    return f"{flag}{value}" if flag == "-O" else f"{flag} {value}"


class EdgeccError(Exception):
    exit_code = 1

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class UsageError(EdgeccError):
    """Bad usage: unknown flag or option value, missing file, a missing or wrong input-shape
    binding (exit 1)."""
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
    token = FRONT_END.set("cli")
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
    finally:
        FRONT_END.reset(token)
