"""RSS of scoring in process, by onnxruntime session option: `python bench/scoring_memory.py MODE`.

MODE is a comma-separated list of: default, noarena (enable_cpu_mem_arena = False), nopattern
(enable_mem_pattern = False), basic (ORT_ENABLE_BASIC), noopt (ORT_DISABLE_ALL), nospin (no
spinning intra/inter-op threads). Prints what importing numpy, importing onnxruntime, building
the packaged model's session and 20 batches of 50 devices each add to the RSS, in MB. Figures in
docs/benchmarks.md ("Scoring memory").
"""
import sys, os, gc
def rss():
    for l in open("/proc/self/status"):
        if l.startswith("VmRSS"): return int(l.split()[1])/1024
mode = sys.argv[1] if len(sys.argv) > 1 else "default"
base = rss()
import numpy as np
a = rss()
import onnxruntime as ort
b = rss()
from edge_agent.health.scorer import packaged_model
from edge_agent.health.features import NAMES
blob = packaged_model().read_bytes()
opts = ort.SessionOptions()
opts.intra_op_num_threads = 1
opts.inter_op_num_threads = 1
opts.log_severity_level = 3
if "noarena" in mode: opts.enable_cpu_mem_arena = False
if "nopattern" in mode: opts.enable_mem_pattern = False
if "basic" in mode: opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
if "noopt" in mode: opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
if "seq" in mode: opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
if "nospin" in mode:
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
s = ort.InferenceSession(blob, opts, providers=["CPUExecutionProvider"])
c = rss()
x = np.random.rand(50, len(NAMES)).astype(np.float32)
for _ in range(20): s.run(["probabilities"], {s.get_inputs()[0].name: x})
d = rss()
print(f"{mode:30s} base {base:.1f} numpy +{a-base:.1f} ort +{b-a:.1f} session +{c-b:.1f} run +{d-c:.1f} total {d:.1f}")
