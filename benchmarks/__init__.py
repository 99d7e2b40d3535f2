"""The benchmark suite: ``python -m benchmarks.suite [--quick] [--only PARTS]``
(docs/benchmarks.md).

Every measurement runs in its own subprocess (``benchmarks.isolate``) so that its peak memory
is its own and one measurement's caches and threads do not disturb the next.
"""
