"""The inference backends a bundle can name (``manifest.backend``): onnxruntime (the default,
always installed) and OpenVINO (the optional extra ``social-triage[openvino]``).

Both load the same ``model.onnx``; :func:`open_session` returns an object with the part of
onnxruntime's ``InferenceSession`` interface the runtime uses (``run``, ``get_inputs``,
``get_outputs``, ``get_modelmeta``), so everything above it is backend-free. Neither imports
torch.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from triage.serving.bundle import BundleError

ONNXRUNTIME = "onnxruntime"
OPENVINO = "openvino"
BACKENDS = (ONNXRUNTIME, OPENVINO)


#: ``manifest.quantization`` of a graph with int8 activations between QuantizeLinear and
#: DequantizeLinear pairs (export's NNCF candidate, :mod:`triage.pipeline.export.static`)
STATIC_INT8 = "int8_static"


def session_options(threads: int, quantization: str = "none") -> ort.SessionOptions:
    """onnxruntime options for small-batch CPU inference: all graph optimisations, ``threads``
    intra-op threads, sequential execution, and worker threads that sleep instead of spinning
    between operators; QDQ fusion (int8 kernels) only for a graph of ``quantization``
    int8_static."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Spinning threads burn the cores that the web server's event loop, the tokenizer and other
    # processes need. Measured on the 2-core machine with other work running (benchmarks/README):
    # single-message p50 11.4 ms without spinning against 21.2 ms with it.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # int8-stored weights (export's int8_weights): constant folding turns each weight's
    # restoring nodes (a DequantizeLinear in bundles exported before 2026-12-07) into an fp32
    # initializer at load, so the arithmetic is fp32. Only int8_static graphs have quantised
    # activations, whose QDQ node units must stay fused.
    if quantization != STATIC_INT8:
        options.add_session_config_entry("session.disable_quant_qdq", "1")
    return options


def open_session(path: Path, backend: str, threads: int, quantization: str = "none") -> Any:
    """A session on ``path`` (a graph of ``manifest.quantization`` ``quantization``) with
    ``backend`` and ``threads`` threads.

    Raises:
        BundleError: an unknown backend, or OpenVINO named but not installed.
    """
    if backend == ONNXRUNTIME:
        return ort.InferenceSession(
            str(path),
            sess_options=session_options(threads, quantization),
            providers=["CPUExecutionProvider"],
        )
    if backend == OPENVINO:
        return OpenVinoSession(path, threads)
    raise BundleError(f"backend {backend!r} is not one of {', '.join(BACKENDS)}")


@dataclass(frozen=True)
class Port:
    """A graph input or output as onnxruntime describes it (name and shape, ``None`` for a
    dynamic axis)."""

    name: str
    shape: list[int | None]


@dataclass(frozen=True)
class ModelMeta:
    custom_metadata_map: dict[str, str] = field(default_factory=dict)


class OpenVinoSession:
    """``model.onnx`` compiled by OpenVINO for the CPU, behind onnxruntime's interface.

    OpenVINO picks the compute precision from the CPU: bf16 where it has native bf16 (AMX or
    AVX512_BF16), fp32 elsewhere; int8-stored weights stay int8 and are decompressed inside
    each matrix multiplication. :attr:`precision` says which. Thread-safe: one infer request
    per thread.
    """

    def __init__(self, path: Path, threads: int):
        try:
            import openvino as ov
        except ImportError as exc:
            raise BundleError(
                "the bundle names the openvino backend, which is not installed: pip install "
                "'social-triage[openvino]', or re-export with export.backend=onnxruntime"
            ) from exc
        core = ov.Core()
        model = core.read_model(str(path))
        self._meta = {}
        if model.has_rt_info(["framework", "manifest"]):
            self._meta["manifest"] = model.get_rt_info(["framework", "manifest"]).astype(str)
        self._compiled = core.compile_model(
            model,
            "CPU",
            {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1},
        )
        hint = self._compiled.get_property("INFERENCE_PRECISION_HINT")  # an ov.Type
        self.precision = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}.get(
            hint.to_string(), hint.to_string()
        )
        self._local = threading.local()

        def port(p: Any) -> Port:
            shape = p.get_partial_shape()
            return Port(p.get_any_name(), [d.get_length() if d.is_static else None for d in shape])

        self._inputs = [port(p) for p in self._compiled.inputs]
        self._outputs = [port(p) for p in self._compiled.outputs]

    def get_inputs(self) -> list[Port]:
        return self._inputs

    def get_outputs(self) -> list[Port]:
        return self._outputs

    def get_modelmeta(self) -> ModelMeta:
        return ModelMeta(self._meta)

    def run(self, names: list[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        results = request.infer(feeds)
        by_name = {key.get_any_name(): value for key, value in results.items()}
        # copies: the request reuses its output buffers on the next call
        return [by_name[n].copy() for n in (names or [o.name for o in self._outputs])]
