"""The health model shipped with the agent: device_health.onnx and its card (written by models/)."""
