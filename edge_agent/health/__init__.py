"""Health scoring on the device: feature windows, the ONNX scorer, the policy, the service."""
