"""The pass registry and what a pass sees besides the graph (a leaf: passes import only this).

    @register_pass
    @dataclass(frozen=True)
    class FuseConvBN:
        name = "fuse-conv-bn"
        tolerance = 1e-5          # max output drift it promises, relative to the output's scale
        eps: float = 1e-5         # an option: -p 'fuse-conv-bn{eps=1e-3}'
        def run(self, graph, ctx) -> bool: ...      # rewrites graph in place; True if changed

The pass manager (pass_manager.py) parses pass specs, builds pipelines and runs them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TextIO

from .target import Target

PASSES: dict[str, type] = {}


def register_pass(cls: type) -> type:
    """Class decorator: register a pass under `cls.name` (made a frozen dataclass if needed)."""
    if not dataclasses.is_dataclass(cls):
        cls = dataclass(frozen=True)(cls)
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"pass class {cls.__qualname__} needs a `name = \"...\"` class attribute")
    if not callable(getattr(cls, "run", None)):
        raise TypeError(f"pass '{name}' needs a run(self, graph, ctx) -> bool method")
    old = PASSES.get(name)
    if old is not None and (old.__module__, old.__qualname__) != (cls.__module__,
                                                                   cls.__qualname__):
        raise TypeError(f"pass name '{name}' is registered twice ({old.__module__} and "
                        f"{cls.__module__})")
    PASSES[name] = cls
    return cls


def tolerance_of(p) -> float:
    return float(getattr(p, "tolerance", 0.0))


@dataclass
class PassContext:
    """What passes may read or report besides the graph."""
    stream: TextIO | None = None               # remarks go here (None: discarded)
    target: Target | None = None               # the code-generation target (None: passes
    #                                            that need one refuse to guess)
    calibration: list[dict] | None = None      # sample feeds (input name -> array): --calib
    runner: Target | None = None               # a target that runs here, for passes that
    #                                            execute the graph fast (calibration); None:
    #                                            they use the reference executor
    results: dict[str, Any] = field(default_factory=dict)   # report sections passes write
    options: dict[str, Any] = field(default_factory=dict)
    refusals: list[tuple[str, str, str]] = field(default_factory=list)  # (pass, op, reason)

    def refuse(self, pass_name: str, op, reason: str) -> None:
        """A rewrite refused `op`: kept for tests and reports (see passes/_rewrite.py)."""
        self.refusals.append((pass_name, op.describe(), reason))

    def remark(self, pass_name: str, message: str) -> None:
        if self.stream is not None:
            print(f"// {pass_name}: {message}", file=self.stream)
