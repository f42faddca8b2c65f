"""Measurements of a model: FLOPs and parameters."""
