"""Hides an installed hiredis: on PYTHONPATH, this module is found first and fails to import.

redis-py picks its reply parser at import (``redis.utils.HIREDIS_AVAILABLE``, set by
``import hiredis``), so an ImportError here makes every client of the process, and of the
processes it spawns (they inherit PYTHONPATH), use the pure-Python parser.
"""

raise ImportError("hiredis is hidden by benchmarks/no_hiredis for the parser comparison")
