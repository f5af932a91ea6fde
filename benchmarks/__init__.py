"""Benchmarks of the romancore kernels (asv suite and ``kernels.py`` script)."""
