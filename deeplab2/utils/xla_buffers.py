"""What an XLA-compiled function stores in memory, read from its optimized HLO.

XLA fuses chains of element-wise work, gathers and reductions into loops that
compute each output element from the inputs directly; only the results of
instructions outside fused computations are stored. Checking those shapes
tells whether a large intermediate (e.g. full-resolution class logits) is
ever held in memory.
"""
import re
from typing import List

import numpy as np
import tensorflow as tf


def stored_shapes(hlo: str) -> List[str]:
    """Shapes (e.g. "f32[2,33,49,7]") of the results of the instructions of an
    optimized HLO module outside fused computations; tuple results give their
    first element's shape."""
    fused = set(re.findall(r"calls=%([\w.\-]+)", hlo))
    shapes = []
    for computation in re.split(r"\n(?=(?:ENTRY )?%[\w.\-]+ \()", hlo):
        name = re.match(r"(?:ENTRY )?%([\w.\-]+) \(", computation)
        if name is None or name.group(1) in fused:
            continue
        shapes += re.findall(r"^\s*(?:ROOT )?%[\w.\-]+ = \(?(\w+\[[\d,]*\])",
                             computation, flags=re.M)
    return shapes


def elements(shape: str) -> int:
    """The number of elements of a shape such as "f32[2,33,49,7]"."""
    dims = shape[shape.index("[") + 1:-1]
    return int(np.prod([int(d) for d in dims.split(",") if d])) if dims else 1


def compiled_stored_shapes(function: tf.types.experimental.GenericFunction, *args,
                           **kwargs) -> List[str]:
    """`stored_shapes` of an XLA-compiled tf.function for these arguments."""
    hlo = function.experimental_get_compiler_ir(*args, **kwargs)(stage="optimized_hlo")
    return stored_shapes(hlo)
