"""Fault injection: real redis-server processes, real faults, every message counted.

Each scenario sends numbered messages, counts each one as delivered once, duplicated or lost,
and compares the counts with the bound that docs/reliability.md states. Marked ``faults``.
"""
