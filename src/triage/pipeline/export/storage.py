"""8-bit (and 4-bit) storage with float compute (issue 18): a quarter of the bytes or less, the
fp32 arithmetic.

Dynamic int8 (:func:`.graph.quantize`) also quantises the activations, and this encoder's
activation outliers (the feed-forward output projection's input) cost it 2-4% of top labels.
Storing only the weights in 8 bits keeps the activations in float:

- the word-embedding table as int8 rows with one scale per row, looked up as two ``Gather``
  nodes (the int8 rows and their scales) and a ``Mul``: the table stays int8 in memory too;
- every ``MatMul`` weight as int8 with one scale per block of :data:`WEIGHT_BLOCK` input rows
  of each output column, restored by ``Cast``, ``Mul``, ``Reshape`` and ``Transpose`` from
  constants only, which the runtime folds into fp32 weights when it loads the graph. With one
  scale per whole column (as ``DequantizeLinear`` on opset 18 allows) 1.2-1.5% of the 12-layer
  model's real-text intents moved, more than the gate's 1%; in blocks of 32 rows 0.5-0.7%
  (docs/results.md, "A compact model");
- with a trimmed vocabulary, its rare tail (the Latin pieces kept only so that any Dutch or
  English text tokenises as before, :func:`.vocab.trim_vocabulary`) in 4 bits
  (:func:`asymmetric_int4`, the ``int4_tail`` variant): two thirds of the rows, which few tokens
  of real text use, at 240 instead of 388 bytes a row. 4 bits on every row moved 2-6% of the
  real-text top labels, on the tail only 0.3-0.7%.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

#: the 8-bit storage variants (``manifest.quantization``): word embeddings only, or those and
#: every MatMul weight
STORAGE = ("int8_embedding", "int8_weights")
#: int8_weights with the trimmed vocabulary's rare tail in 4 bits (``manifest.quantization``)
INT4_TAIL = "int4_tail"
#: embedding values of a tail row that share one 4-bit scale and minimum
TAIL_BLOCK = 32
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


def int8_storage(src: Path, out: Path, weights: bool, tail_from: int | None = None) -> None:
    """Write ``src`` with its word-embedding table in int8 rows (and, with ``weights``, every
    MatMul weight in int8 blocks, :func:`blocked_int8`; with ``tail_from``, the table's rows from
    that one on in 4 bits, :func:`tail_lookup`) to ``out``.

    Raises:
        ValueError: the graph has no word-embedding lookup over a float initializer, or
            ``tail_from`` leaves no rows on one side.
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
            rows = numpy_helper.to_array(inits[name])
            if tail_from is not None:
                lookup, replaced[name] = tail_lookup(rows, tail_from, name, ids, output)
                new_nodes += lookup
                continue
            q, scale = symmetric_int8(rows, shared=1)
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


def asymmetric_int4(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(n, width)`` rows as 4-bit codes, two to a byte (an even column in the low half),
    ``(n, width / 2)`` uint8, with a float16 step and minimum per block of :data:`TAIL_BLOCK`
    values of a row, ``(n, blocks, 1)`` each: ``code * step + minimum`` restores a value
    within half a step (and float16's rounding of the two).

    Raises:
        ValueError: an odd width, or one that does not divide into blocks.
    """
    n, width = rows.shape
    if width % 2 or width % TAIL_BLOCK:
        raise ValueError(f"cannot store rows of width {width} in 4-bit blocks of {TAIL_BLOCK}")
    blocks = rows.reshape(n, width // TAIL_BLOCK, TAIL_BLOCK)
    low = blocks.min(axis=2, keepdims=True).astype(np.float16)
    step = ((blocks.max(axis=2, keepdims=True) - low) / 15).astype(np.float16)
    step = np.where(step > 0, step, np.float16(1))
    codes = np.rint((blocks - low.astype(np.float32)) / step.astype(np.float32))
    codes = np.clip(codes, 0, 15).astype(np.uint8).reshape(n, width)
    return codes[:, 0::2] | (codes[:, 1::2] << 4), step, low


def tail_lookup(
    table: np.ndarray, tail_from: int, name: str, ids: str, output: str
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """The nodes and initializers that look ``ids`` up in ``table`` with the rows before
    ``tail_from`` in int8 (one scale per row) and the rest in 4 bits (:func:`asymmetric_int4`):
    both parts are gathered (an id outside a part is clamped into it), and ``Where`` picks
    the part each id belongs to. The tables stay in 8 and 4 bits in memory."""
    rows, width = table.shape
    if not 0 < tail_from < rows:
        raise ValueError(f"tail_from={tail_from} must leave rows on both sides of {rows}")
    head, head_scale = symmetric_int8(table[:tail_from], shared=1)
    packed, step, low = asymmetric_int4(table[tail_from:])
    constants = {
        "int8": head,
        "scale": head_scale,
        "int4": packed,
        "step": step,
        "min": low,
        "tail_from": np.array(tail_from, np.int64),
        "head_last": np.array(tail_from - 1, np.int64),
        "zero": np.array(0, np.int64),
        "sixteen": np.array(16, np.int32),
        "last_axis": np.array([-1], np.int64),
        "blocks": np.array([0, 0, width // TAIL_BLOCK, TAIL_BLOCK], np.int64),
        "width": np.array([0, 0, width], np.int64),
    }
    c = {key: f"{name}_{key}" for key in constants}  # initializer names

    def node(op: str, inputs: list[str], out: str, **attrs: int) -> onnx.NodeProto:
        """``op`` on initializers (``c``'s keys) and tensors of this lookup (other names)."""
        names = [c.get(i, i if i == ids else f"{output}_{i}") for i in inputs]
        return helper.make_node(op, names, [out if out == output else f"{output}_{out}"], **attrs)

    nodes = [
        node("Less", [ids, "tail_from"], "in_head"),
        node("Unsqueeze", ["in_head", "last_axis"], "in_head_rows"),
        # the head: int8 rows times their scale
        node("Min", [ids, "head_last"], "head_ids"),
        node("Gather", ["int8", "head_ids"], "head_codes", axis=0),
        node("Cast", ["head_codes"], "head_float", to=TensorProto.FLOAT),
        node("Gather", ["scale", "head_ids"], "head_scale", axis=0),
        node("Mul", ["head_float", "head_scale"], "head_rows"),
        # the tail: each byte's two 4-bit codes, in blocks, times their step plus their minimum
        node("Sub", [ids, "tail_from"], "shifted_ids"),
        node("Max", ["shifted_ids", "zero"], "tail_ids"),
        node("Gather", ["int4", "tail_ids"], "packed", axis=0),
        node("Cast", ["packed"], "bytes", to=TensorProto.INT32),
        node("Div", ["bytes", "sixteen"], "high"),
        node("Mul", ["high", "sixteen"], "high_part"),
        node("Sub", ["bytes", "high_part"], "low"),
        node("Unsqueeze", ["low", "last_axis"], "low_column"),
        node("Unsqueeze", ["high", "last_axis"], "high_column"),
        node("Concat", ["low_column", "high_column"], "pairs", axis=-1),
        node("Cast", ["pairs"], "pairs_float", to=TensorProto.FLOAT),
        node("Reshape", ["pairs_float", "blocks"], "tail_codes"),
        node("Gather", ["step", "tail_ids"], "step_half", axis=0),
        node("Cast", ["step_half"], "tail_step", to=TensorProto.FLOAT),
        node("Gather", ["min", "tail_ids"], "min_half", axis=0),
        node("Cast", ["min_half"], "tail_min", to=TensorProto.FLOAT),
        node("Mul", ["tail_codes", "tail_step"], "tail_steps"),
        node("Add", ["tail_steps", "tail_min"], "tail_blocks"),
        node("Reshape", ["tail_blocks", "width"], "tail_rows"),
        node("Where", ["in_head_rows", "head_rows", "tail_rows"], output),
    ]
    return nodes, [numpy_helper.from_array(v, c[k]) for k, v in constants.items()]
