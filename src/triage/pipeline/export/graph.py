"""The ONNX graph: the checkpoint and its temperatures as one graph of calibrated
probabilities, run as the runtime runs it, and its dynamic int8 variant."""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer

from triage.modeling.model import TriageModel
from triage.serving.bundle import EMBEDDING_OUTPUT
from triage.serving.runtime import graph_outputs


class ProbabilityGraph(torch.nn.Module):
    """What the ONNX file computes: calibrated probabilities per head, in label order, and the
    pooled sentence embedding (``sentence_embedding``, for :mod:`triage.novelty`)."""

    def __init__(self, model: TriageModel, temperatures: dict[str, float]):
        super().__init__()
        self.model = model.eval()
        self.heads = list(model.labels)
        for head in self.heads:
            self.register_buffer(f"temperature_{head}", torch.tensor(float(temperatures[head])))

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        logits, pooled = self.model.outputs(input_ids, attention_mask)
        probs = tuple(
            torch.softmax(logits[h].float() / getattr(self, f"temperature_{h}"), dim=-1)
            for h in self.heads
        )
        return (*probs, pooled.float())


def export_graph(
    model: TriageModel, temperatures: dict[str, float], pad_id: int, path: Path, opset: int
) -> None:
    """Write the probability graph to ``path`` with fixed names and dynamic batch/sequence."""
    graph = ProbabilityGraph(model, temperatures)
    # two rows of different lengths, so neither axis is specialised to a constant
    ids = torch.tensor([[0, 5, 6, 7, 2], [0, 8, 2, pad_id, pad_id]], dtype=torch.long)
    mask = (ids != pad_id).long()
    mask[:, 0] = 1
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    torch.onnx.export(
        graph,
        (ids, mask),
        str(path),
        input_names=["input_ids", "attention_mask"],
        output_names=[f"{head}_probs" for head in graph.heads] + [EMBEDDING_OUTPUT],
        dynamic_shapes={
            "input_ids": {0: batch, 1: sequence},
            "attention_mask": {0: batch, 1: sequence},
        },
        opset_version=opset,
        dynamo=True,
        external_data=False,
    )


def onnx_outputs(
    session: Any,
    tokenizer: Tokenizer,
    texts: Sequence[str],
    prefix: str,
    max_length: int,
    pad_id: int,
    batch_size: int = 64,
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """The graph's probabilities per head and embeddings for ``texts`` (in order), run as the
    runtime runs it."""
    tokenizer = copy.deepcopy(tokenizer)
    tokenizer.enable_truncation(max_length)
    return graph_outputs(session, tokenizer, texts, prefix, pad_id, batch_size)


def quantize(fp32: Path, out: Path) -> None:
    """Dynamic int8 quantisation of the weights (MatMul and Gather) with onnxruntime."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.WARNING)  # it logs every tensor at INFO
    try:
        quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        logging.getLogger().setLevel(quiet)
