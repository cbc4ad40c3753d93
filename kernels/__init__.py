"""Compute kernels behind the backends: Triton GPU kernels and their pure-torch twins.

Empty until the fused-primitive work lands; the engine never imports this package directly.
"""
