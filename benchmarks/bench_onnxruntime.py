"""ONNX Runtime vs eager PyTorch for the LiteMedSAM encoder on this CPU (issue #16), one run.

Not a dependency of sam-med: install it aside to measure, e.g.
  pip install --target /tmp/ortpkgs --no-deps onnxruntime onnx protobuf flatbuffers ml_dtypes typing_extensions
  PYTHONPATH=/tmp/ortpkgs python benchmarks/bench_onnxruntime.py
Exports the encoder (TorchScript exporter, opset 17), checks the output against eager fp32,
then times eager fp32, eager bf16 autocast and ORT fp32 (CPU provider, torch's thread count)
interleaved, 6 rounds, and prints the medians and the load average.
"""
import time, statistics, os, sys, numpy as np, torch
from pathlib import Path
from sam_med import io
from sam_med.models import load_model
MNI = str(Path(__file__).resolve().parents[2] / "shared" / "data" / "mni152" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")
ONNX = os.path.join(os.environ.get("TMPDIR", "/tmp"), "lite_medsam_encoder.onnx")
vol = io.load(MNI)
img = np.take(vol.array, vol.shape[vol.slice_axis] // 2, axis=vol.slice_axis).astype(np.float32)
lm = load_model("lite_medsam", precision="fp32")
x = lm.preprocess(img)[0][None]
enc = lm.model.image_encoder.eval()
t0=time.perf_counter()
with torch.no_grad():
    torch.onnx.export(enc, (x,), ONNX, input_names=["x"], output_names=["e"], opset_version=17, dynamo=False)
print("export s", time.perf_counter()-t0, flush=True)
import onnxruntime as ort
so = ort.SessionOptions(); so.intra_op_num_threads = torch.get_num_threads()
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
sess = ort.InferenceSession(ONNX, so, providers=["CPUExecutionProvider"])
xn = x.numpy()
def eager(ac):
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=ac):
        return enc(x).float()
ref = eager(False)
o = sess.run(None, {"x": xn})[0]
print("max abs diff ort vs eager fp32", float(np.abs(o - ref.numpy()).max()))
T = {"eager fp32": [], "eager bf16": [], "ort fp32": []}
for _ in range(6):
    for k in T:
        t0 = time.perf_counter()
        if k == "ort fp32": sess.run(None, {"x": xn})
        else: eager(k.endswith("bf16"))
        T[k].append(time.perf_counter() - t0)
print({k: round(statistics.median(v), 3) for k, v in T.items()}, os.getloadavg(), ort.__version__)
