"""KServe custom runtime for scoregate's ONNX models, and the tools that build those models."""
