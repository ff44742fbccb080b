"""Benchmarks: jelbo against the alternatives on a linear-decoder VAE step (`python -m bench.run`).

Each contender is a small module in this package; :mod:`bench.run` runs every contender in
its own subprocess (:mod:`bench.worker`), once per allocator for the JAX ones, and writes a
Markdown table and a JSON file.
"""
