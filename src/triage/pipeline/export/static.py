"""int8 weights and activations calibrated by NNCF, with accuracy control (issue 18).

Dynamic int8 (:func:`.graph.quantize`) picks each activation's int8 range from the batch it
runs on, and this encoder's activation outliers (the feed-forward output projection's input)
cost it 2-4% of top labels. NNCF's post-training quantisation (transformer preset) instead
measures the ranges on calibration messages beforehand and corrects the biases afterwards. With
accuracy control it then puts back into float, one at a time, the operations whose int8 moves
the top labels most, until the graph's top labels on held-out messages agree with the float
graph's within ``max_drop``.

SmoothQuant (moving activation outliers into the weights) runs as a step of its own first
(:func:`smoothed`): NNCF 3.4's accuracy control on ONNX puts a reverted operation's original,
unsmoothed weights back but keeps the smoothing scale on its input, so with SmoothQuant inside
it every revert breaks the graph (on the tests' tiny model, reverting 16 MatMuls left 56% of
top labels the same, against 99% before any revert). On the already smoothed float graph,
whose outputs are the original's, the original weights are the smoothed ones.

The result is a QDQ ONNX graph (int8 weights stored as int8): OpenVINO runs it in int8,
onnxruntime too with its QDQ fusion on (:func:`triage.serving.backends.session_options`).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from triage.batching import padded_batches
from triage.errors import ConfigError
from triage.serving.backends import STATIC_INT8, open_session

#: messages per model call while calibrating and validating
BATCH = 32


def static_int8(
    src: Path,
    out: Path,
    calibration: Sequence[list[int]],
    validation: Sequence[list[int]],
    pad_id: int,
    backend: str,
    max_drop: float,
    max_reverted: int,
    threads: int,
) -> dict[str, float]:
    """Write ``src`` quantised to int8 by NNCF to ``out``: activation ranges from the
    ``calibration`` messages, accuracy control on the ``validation`` messages (both as token
    ids, tokenised as the runtime tokenises), run on ``backend``, putting at most
    ``max_reverted`` operation groups back into float. Returns how many operations are left in
    float (``operations_in_float``, see :func:`operations_in_float`) and the share of validation
    top labels (messages x heads) that stayed the float graph's (``validation_agreement``).

    Raises:
        ConfigError: NNCF is not installed.
    """
    try:
        import nncf
        from nncf.quantization.advanced_parameters import (
            AdvancedAccuracyRestorerParameters,
            AdvancedQuantizationParameters,
            AdvancedSmoothQuantParameters,
        )
    except ImportError as exc:
        raise ConfigError(
            "export.static_int8 needs NNCF: pip install 'social-triage[train]', or set "
            "export.static_int8.enabled=false"
        ) from exc
    feeds = [
        {"input_ids": ids, "attention_mask": mask}
        for _, ids, mask in padded_batches(list(calibration), pad_id, BATCH)
    ]
    model = onnx.load(str(src))
    heads = [o.name for o in model.graph.output if o.name.endswith("_probs")]
    sessions = Sessions(backend, threads)

    def top_labels(candidate: onnx.ModelProto, rows: list[int]) -> np.ndarray:
        """``(len(rows), heads)``: each head's top label on those validation messages."""
        session = sessions.get(candidate)
        out = np.zeros((len(rows), len(heads)), np.int64)
        for index, ids, mask in padded_batches([validation[r] for r in rows], pad_id, BATCH):
            probs = session.run(heads, {"input_ids": ids, "attention_mask": mask})
            out[index] = np.stack([p.argmax(1) for p in probs], axis=1)
        return out

    reference = top_labels(model, list(range(len(validation))))

    def agreement(candidate: onnx.ModelProto, items: Iterable[int]) -> tuple[float, list[float]]:
        """NNCF's validation: per message the share of heads whose top label is the float
        graph's, and their mean."""
        rows = list(items)
        same = (top_labels(candidate, rows) == reference[rows]).mean(axis=1)
        return float(same.mean()), same.tolist()

    with _quiet_nncf():
        quantized = nncf.quantize_with_accuracy_control(
            smoothed(model, feeds),
            nncf.Dataset(feeds),
            nncf.Dataset(list(range(len(validation)))),
            agreement,
            max_drop=max_drop,
            model_type=nncf.ModelType.TRANSFORMER,
            subset_size=len(feeds),
            # the graph is smoothed already (see the module's docstring)
            advanced_quantization_parameters=AdvancedQuantizationParameters(
                smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=-1)
            ),
            advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
                # rank the operations on the messages int8 changed most, not on all of them
                ranking_subset_size=min(len(validation), 100),
                num_ranking_workers=1,
                max_num_iterations=max_reverted,
            ),
        )
    onnx.save(quantized, str(out))
    return {
        "operations_in_float": float(operations_in_float(quantized)),
        "validation_agreement": agreement(quantized, range(len(validation)))[0],
    }


def operations_in_float(model: onnx.ModelProto) -> int:
    """How many of ``model``'s operations that NNCF's transformer preset quantises (every
    MatMul, the heads' Gemms, the embeddings' Gathers) take an input in float, i.e. were put
    back by accuracy control: an input is int8 when it comes out of a DequantizeLinear, directly
    or through the reshapes and transposes that the attention puts between its quantisers and its
    MatMuls. A Gather counts only on a table (an initializer), not on a shape."""
    int8 = set()
    for node in model.graph.node:  # ONNX nodes come in topological order
        if node.op_type == "DequantizeLinear" or (
            node.op_type in ("Reshape", "Transpose") and node.input[0] in int8
        ):
            int8.add(node.output[0])
    tables = {i.name for i in model.graph.initializer} | int8
    count = 0
    for node in model.graph.node:
        if node.op_type in ("MatMul", "Gemm"):
            inputs = node.input[:2]  # a Gemm's third input is its bias, never quantised
        elif node.op_type == "Gather" and node.input[0] in tables:
            inputs = node.input[:1]  # its second is the indices
        else:
            continue
        count += not all(i in int8 for i in inputs)
    return count


def smoothed(model: onnx.ModelProto, feeds: list[dict[str, np.ndarray]]) -> onnx.ModelProto:
    """``model`` in float with NNCF's SmoothQuant applied (each smoothed MatMul's input divided
    by per-channel scales that its weights are multiplied by: the same outputs up to rounding),
    by quantising it without bias correction and taking the quantise-dequantise pairs out."""
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters

    quantized = nncf.quantize(
        model,
        nncf.Dataset(feeds),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(feeds),
        advanced_parameters=AdvancedQuantizationParameters(
            disable_bias_correction=True, backend_params={"compress_weights": False}
        ),
    )
    graph = quantized.graph
    quantizers = {n.output[0]: n for n in graph.node if n.op_type == "QuantizeLinear"}
    # a DequantizeLinear after a QuantizeLinear stands for the QuantizeLinear's float input
    bypass = {
        n.output[0]: quantizers[n.input[0]].input[0]
        for n in graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in quantizers
    }
    pairs = set(bypass) | {  # the pairs' outputs: a Q feeds only its DQ
        n.input[0] for n in graph.node if n.output[0] in bypass
    }
    kept = [n for n in graph.node if n.output[0] not in pairs]
    for node in kept:
        for i, name in enumerate(node.input):
            node.input[i] = bypass.get(name, name)
    for output in graph.output:
        if output.name in bypass:
            raise ValueError(f"graph output {output.name} comes out of a quantiser")
    del graph.node[:]
    graph.node.extend(kept)
    used = {name for n in graph.node for name in n.input}
    unused = [i for i in graph.initializer if i.name not in used]
    for initializer in unused:
        graph.initializer.remove(initializer)
    return quantized


class Sessions:
    """One session at a time on ``backend``: the graph NNCF asks about, written to a temporary
    file (both backends read a file), reused while NNCF asks about the same graph."""

    def __init__(self, backend: str, threads: int):
        self.backend, self.threads = backend, threads
        self._model: onnx.ModelProto | None = None
        self._session: Any = None

    def get(self, model: onnx.ModelProto) -> Any:
        if model is not self._model:
            with tempfile.TemporaryDirectory(prefix="triage-int8-") as tmp:
                path = Path(tmp) / "model.onnx"
                onnx.save(model, str(path))
                self._session = open_session(path, self.backend, self.threads, STATIC_INT8)
            self._model = model
        return self._session


@contextmanager
def _quiet_nncf() -> Iterator[None]:
    """NNCF logs every step at INFO (its progress bars stay); keep its warnings only."""
    logger = logging.getLogger("nncf")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)
