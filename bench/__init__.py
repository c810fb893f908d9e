"""Benchmarks and the independent PyTorch reference implementation of the recipe."""
