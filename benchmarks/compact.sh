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
# (models/student/<name>/onnx) and on OpenVINO (.../onnx_openvino), both also gated on the
# real-text sets (export.gate_sets), the OpenVINO one with NNCF's static int8 among its
# candidates (export.static_int8). Research only, never to ship: the student's static int8 graph
# with the gate loosened (models/compact/<name>_int8_loose; its gate numbers in
# models/compact/<name>_int8_loose.json), to time what int8 arithmetic would give.
# Numbers: models/compact/serve.json.
set -euo pipefail
cd "$(dirname "$0")/.."
TRIAGE=${TRIAGE:-.venv/bin/triage}
name=${1:?give the student, e.g. l6_alt}
student=models/student/$name
$TRIAGE export export.out_dir=models/compact/l12_fp32 export.report=models/compact/l12_fp32.json \
  export.quantize=false export.int8_storage=false export.trim_vocab=false tracking.enabled=false
student_export() {
  $TRIAGE export "export.checkpoint=$student/checkpoint" \
    "export.calibration=$student/calibration.json" "evaluate.out_dir=$student/evaluation" "$@"
}
gated="export.gate_sets=[absa_nl,tweeteval_sentiment_val]"
student_export "export.out_dir=$student/onnx" "export.report=$student/export.json" "$gated"
student_export "export.out_dir=$student/onnx_openvino" "export.report=$student/export_openvino.json" \
  export.backend=openvino "$gated" export.static_int8.enabled=true
student_export "export.out_dir=models/compact/${name}_int8_loose" \
  "export.report=models/compact/${name}_int8_loose.json" export.backend=openvino \
  export.static_int8.enabled=true export.quantize=false export.int8_storage=false \
  export.trim_vocab=true export.gate.top1_agreement=0.95 export.gate.macro_f1_drop=0.02 \
  export.gate.fpr_rise=0.02 export.gate.ece_rise=0.02 tracking.enabled=false
.venv/bin/python benchmarks/serve_benchmark.py --reference models/checkpoint \
  --bundle l12_fp32=models/compact/l12_fp32 --bundle shipped=models/onnx \
  --bundle "$name=$student/onnx" --bundle "${name}_openvino=$student/onnx_openvino" \
  --bundle "${name}_int8_loose=models/compact/${name}_int8_loose" \
  --json models/compact/serve.json
