"""Dtypes of the tensors of a traced tf.function, including the functions it calls.

A check such as "no float64 in the exported post-processing" (TPUs have no
float64) must look inside nested functions: tf.function calls
(PartitionedCall, StatefulPartitionedCall, XLA-compiled ones included), while
loop bodies and conditions, and cond / case branches. These ops name their
functions in function-valued attributes (`f`, `body`, `cond`, `then_branch`,
`else_branch`, `branches`); the functions' graphs are looked up in the function
library of the calling graph, or of the graphs that called it.
"""
from typing import Iterable, Iterator, List, Sequence, Set, Tuple

import tensorflow as tf


def tensor_dtypes(concrete_function) -> Set[tf.DType]:
    """Dtypes of all tensors of `concrete_function` and of the functions it calls."""
    return {output.dtype for _, op in walk_ops(concrete_function.graph)
            for output in op.outputs}


def ops_producing(concrete_function, dtypes: Iterable[tf.DType]) -> List[str]:
    """'function path/op name (op type)' of each op with an output of one of `dtypes`.

    Nested functions included; meant for assertion messages.
    """
    wanted = {tf.as_dtype(dtype) for dtype in dtypes}
    return [f"{path}/{op.name} ({op.type})" for path, op in walk_ops(concrete_function.graph)
            if any(output.dtype in wanted for output in op.outputs)]


def compiled_tensor_dtypes(concrete_function) -> Set[tf.DType]:
    """Dtypes of all tensors of the XLA-compiled functions (`jit_compile=True`)
    that `concrete_function` calls, at any depth, and of what they call."""
    dtypes = set()
    for _, op in walk_ops(concrete_function.graph):
        attr = op.node_def.attr.get("_XlaMustCompile")
        if attr is not None and attr.b:
            for name in _called_functions(op):
                called = _function_graph(name, [concrete_function.graph, op.graph])
                dtypes.update(output.dtype for _, inner in walk_ops(called)
                              for output in inner.outputs)
    return dtypes


def walk_ops(graph: tf.Graph) -> Iterator[Tuple[str, tf.Operation]]:
    """(path, op) for each op of `graph` and, once per function, of the functions it calls.

    `path` is the chain of function names from `graph` to the op's function.
    """
    yield from _walk(graph, graph.name, [graph], set())


def _walk(graph, path, callers: Sequence[tf.Graph], visited: Set[str]):
    for op in graph.get_operations():
        yield path, op
        for name in _called_functions(op):
            if name in visited:
                continue
            visited.add(name)
            called = _function_graph(name, callers)
            yield from _walk(called, f"{path}/{name}", [*callers, called], visited)


def _called_functions(op: tf.Operation) -> List[str]:
    """Names of the functions in the function-valued attributes of `op`."""
    names = []
    for value in op.node_def.attr.values():
        if value.HasField("func"):
            names.append(value.func.name)
        names.extend(function.name for function in value.list.func)
    return names


def _function_graph(name: str, callers: Sequence[tf.Graph]) -> tf.Graph:
    """The graph of function `name`, from the innermost caller's library that has it."""
    for graph in reversed(callers):
        function = graph._get_function(name)  # noqa: SLF001 (no public lookup)
        if function is not None and function.graph is not None:
            return function.graph
    raise LookupError(f"Function {name!r} is not in the library of its callers.")
