"""Benchmark scripts that regenerate docs/benchmarks.md (run them as ``python benchmarks/cpu.py`` / ``gpu.py``).

A package only so that the scripts and the tests can import the shared modules as ``benchmarks.*``.
"""
