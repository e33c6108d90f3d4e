"""StreamLab's benchmark suite: workloads run through the public API, against two baselines.

Run it with ``python -m benchmarks.run`` (``--quick`` for a smoke run). See
``benchmarks/README.md`` for what each workload measures and how to read the table.
Nothing here is imported by ``streamlab`` itself.
"""
