"""8-bit storage with float compute (issue 18): a quarter of the bytes, the fp32 arithmetic.

Dynamic int8 (:func:`.graph.quantize`) also quantises the activations, and this encoder's
activation outliers (the feed-forward output projection's input) cost it 2-4% of top labels.
Storing only the weights in 8 bits keeps the activations in float:

- the word-embedding table as int8 rows with one scale per row, looked up as two ``Gather``
  nodes (the int8 rows and their scales) and a ``Mul``: the table stays int8 in memory too;
- every ``MatMul`` weight as int8 with one scale per block of :data:`WEIGHT_BLOCK` input rows
  of each output column, restored by ``Cast``, ``Mul`` and ``Reshape`` from constants only, which
  the runtime folds into fp32 weights when it loads the graph. With one scale per whole column
  (as ``DequantizeLinear`` on opset 18 allows) 1.2-1.5% of the 12-layer model's real-text
  intents moved, more than the gate's 1%; in blocks of 32 rows 0.5-0.7% (docs/results.md, "A
  compact model").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

#: the 8-bit storage variants (``manifest.quantization``): word embeddings only, or those and
#: every MatMul weight
STORAGE = ("int8_embedding", "int8_weights")
#: a Gather over a 2-D float table this large is the word-embedding lookup
MIN_EMBEDDING_ROWS = 1000
#: input rows of a MatMul weight that share one scale per column (a weight whose rows do not
#: divide into such blocks gets one scale per column)
WEIGHT_BLOCK = 32


def symmetric_int8(weight: np.ndarray, shared: int) -> tuple[np.ndarray, np.ndarray]:
    """``weight`` as int8 with one float32 scale shared along axis ``shared`` (``max|w| /
    127`` of each slice; an all-zero slice gets scale 1): ``q * scale`` restores it within half
    a step."""
    scale = np.abs(weight).max(axis=shared, keepdims=True) / 127.0
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    q = np.clip(np.rint(weight / scale), -127, 127).astype(np.int8)
    return q, scale


def int8_storage(src: Path, out: Path, weights: bool) -> None:
    """Write ``src`` with its word-embedding table in int8 rows (and, with ``weights``, every
    MatMul weight in int8 blocks, :func:`blocked_int8`) to ``out``.

    Raises:
        ValueError: the graph has no word-embedding lookup over a float initializer.
    """
    model = onnx.load(str(src))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    table = next(
        (
            node
            for node in graph.node
            if node.op_type == "Gather"
            and node.input[0] in inits
            and inits[node.input[0]].data_type == TensorProto.FLOAT
            and len(inits[node.input[0]].dims) == 2
            and inits[node.input[0]].dims[0] >= MIN_EMBEDDING_ROWS
        ),
        None,
    )
    if table is None:
        raise ValueError(f"{src}: no word-embedding Gather over a float initializer")
    new_nodes: list[onnx.NodeProto] = []
    replaced: dict[str, list[onnx.TensorProto]] = {}
    for node in graph.node:
        if node is table:
            name, ids, output = node.input[0], node.input[1], node.output[0]
            q, scale = symmetric_int8(numpy_helper.to_array(inits[name]), shared=1)
            replaced[name] = [
                numpy_helper.from_array(q, f"{name}_int8"),
                numpy_helper.from_array(scale, f"{name}_scale"),
            ]
            new_nodes += [
                helper.make_node("Gather", [f"{name}_int8", ids], [f"{output}_int8"], axis=0),
                helper.make_node(
                    "Cast", [f"{output}_int8"], [f"{output}_float"], to=TensorProto.FLOAT
                ),
                helper.make_node("Gather", [f"{name}_scale", ids], [f"{output}_scale"], axis=0),
                helper.make_node("Mul", [f"{output}_float", f"{output}_scale"], [output]),
            ]
            continue
        if (
            weights
            and node.op_type == "MatMul"
            and node.input[1] in inits
            and inits[node.input[1]].data_type == TensorProto.FLOAT
            and len(inits[node.input[1]].dims) == 2
        ):
            name = node.input[1]
            if name not in replaced:
                replaced[name] = blocked_int8(numpy_helper.to_array(inits[name]), name)
                new_nodes += restore_blocked(name)
            node.input[1] = f"{name}_dequantized"
        new_nodes.append(node)
    kept = [i for i in graph.initializer if i.name not in replaced]
    del graph.initializer[:]
    graph.initializer.extend(kept + [t for ts in replaced.values() for t in ts])
    del graph.node[:]
    graph.node.extend(new_nodes)  # a weight is restored just before its first reader
    onnx.checker.check_model(model)
    onnx.save(model, str(out))


def blocked_int8(weight: np.ndarray, name: str) -> list[onnx.TensorProto]:
    """A ``(rows, columns)`` weight as initializers for :func:`restore_blocked`: int8 ``(columns,
    blocks, rows per block)`` (each column's rows in blocks), float32 scales ``(columns, blocks,
    1)`` and the transposed shape. Column-major, as OpenVINO expects group-wise int8 weights: it
    fails to compile the row-major blocks (its TransposeToReshape pass)."""
    rows, columns = weight.shape
    block = WEIGHT_BLOCK if rows % WEIGHT_BLOCK == 0 else rows
    q, scale = symmetric_int8(weight.T.reshape(columns, rows // block, block), shared=2)
    return [
        numpy_helper.from_array(q, f"{name}_int8"),
        numpy_helper.from_array(scale, f"{name}_scale"),
        numpy_helper.from_array(np.array([columns, rows], np.int64), f"{name}_shape"),
    ]


def restore_blocked(name: str) -> list[onnx.NodeProto]:
    """The nodes that turn :func:`blocked_int8`'s initializers back into the float weight
    ``<name>_dequantized``."""
    return [
        helper.make_node("Cast", [f"{name}_int8"], [f"{name}_float"], to=TensorProto.FLOAT),
        helper.make_node("Mul", [f"{name}_float", f"{name}_scale"], [f"{name}_scaled"]),
        helper.make_node("Reshape", [f"{name}_scaled", f"{name}_shape"], [f"{name}_columns"]),
        helper.make_node("Transpose", [f"{name}_columns"], [f"{name}_dequantized"], perm=[1, 0]),
    ]
