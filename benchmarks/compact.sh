#!/usr/bin/env bash
# Issue 18's comparison in one go: export the bundles, then time them side by side with
# PyTorch eager on the 12-layer default (benchmarks/serve_benchmark.py). Nothing else
# CPU-heavy may run beside it on a 2-core machine. Needs `make run` (the 12-layer default in
# models/checkpoint, its bundle in models/onnx) and a student from benchmarks/student.sh.
#
#   bash benchmarks/compact.sh l6_alt            # student folder models/student/l6_alt
#
# Bundles: models/compact/l12_fp32 (the 12-layer model, fp32, full vocabulary: what onnxruntime
# does without any shrinking), models/onnx (the shipped default), the student on onnxruntime
# (models/student/<name>/onnx) and on OpenVINO (.../onnx_openvino). The student's exports are
# also gated on the real-text sets (export.gate_sets). Numbers: models/compact/serve.json.
set -euo pipefail
cd "$(dirname "$0")/.."
TRIAGE=${TRIAGE:-.venv/bin/triage}
name=${1:?give the student, e.g. l6_alt}
student=models/student/$name
$TRIAGE export export.out_dir=models/compact/l12_fp32 export.report=models/compact/l12_fp32.json \
  export.quantize=false export.int8_storage=false export.trim_vocab=false tracking.enabled=false
for backend in onnxruntime openvino; do
  suffix=$([ $backend = onnxruntime ] && echo "" || echo "_$backend")
  $TRIAGE export "export.checkpoint=$student/checkpoint" \
    "export.calibration=$student/calibration.json" "export.out_dir=$student/onnx$suffix" \
    "export.report=$student/export$suffix.json" "export.backend=$backend" \
    "export.gate_sets=[absa_nl,tweeteval_sentiment_val]" "evaluate.out_dir=$student/evaluation"
done
.venv/bin/python benchmarks/serve_benchmark.py --reference models/checkpoint \
  --bundle l12_fp32=models/compact/l12_fp32 --bundle shipped=models/onnx \
  --bundle "$name=$student/onnx" --bundle "${name}_openvino=$student/onnx_openvino" \
  --json models/compact/serve.json
