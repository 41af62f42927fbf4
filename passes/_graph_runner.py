"""Running a graph inside a pass (calibration, measured errors): compiled for the context's
runner target when there is one, else the reference executor; and swapping a rewritten copy
into the graph the pass manager holds."""
from __future__ import annotations

from edgecc.ir import Graph


def fused(graph: Graph) -> Graph:
    """A copy of `graph` with its kernels fused (a few times fewer calls to run)."""
    from edgecc.pass_manager import PassManager, parse_pass
    return PassManager([parse_pass("fuse-kernels"), parse_pass("dce")],
                       verify=False).run(graph.clone())


def graph_runner(graph: Graph, ctx, outputs_only: bool = False):
    """feeds -> (outputs, every value by name) [or outputs]: compiled for ctx.runner, else
    the reference executor."""
    if ctx.runner is not None:
        from edgecc.backends.tvm.build import CompiledGraph
        if outputs_only:
            compiled = CompiledGraph(fused(graph), ctx.runner)
            return lambda feeds: compiled.run(feeds)
        compiled = CompiledGraph(graph, ctx.runner)
        return lambda feeds: compiled.run(feeds, keep_all=True)
    from edgecc.kernels import run_graph
    if outputs_only:
        return lambda feeds: run_graph(graph, feeds)
    return lambda feeds: run_graph(graph, feeds, keep_all=True)


def replace_contents(graph: Graph, new: Graph) -> None:
    """Make `graph` (the object the pass manager holds) the rewritten copy `new`."""
    graph.inputs, graph.params, graph.ops, graph.outputs = (new.inputs, new.params, new.ops,
                                                            new.outputs)
