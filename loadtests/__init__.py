"""Load-testing kit (Locust users and scenarios for ScoringService) and the side-by-side benchmark.

Modules that import Locust (``user``, ``scenarios``) monkey-patch the process with gevent when they
are imported, so only Locust's own processes import them; everything else here (thresholds,
reports, the benchmark) is plain Python usable from tests and asyncio code.
"""
