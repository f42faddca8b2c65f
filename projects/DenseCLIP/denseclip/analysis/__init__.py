"""Measurements of a model: FLOPs and parameters (flops); latency, peak memory and training-step
time (benchmark)."""
