"""Reading and reporting results, with no torch: ``schema`` (the single definition of the measured figures and
metrics), ``load`` (pytest-benchmark JSON files), ``report``, ``compare``, ``export``, ``plots``, ``markdown`` and
``budgets``."""
