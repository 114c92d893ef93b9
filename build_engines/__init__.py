"""Offline data assembly, training, evaluation, ONNX/TensorRT export and the Triton model repository."""

from __future__ import annotations
