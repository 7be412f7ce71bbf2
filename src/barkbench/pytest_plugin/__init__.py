"""barkbench's pytest plugin: ``plugin`` (the hooks and fixtures, loaded through the ``pytest11`` entry point),
``options`` (the ``--bark-*`` options and their typed parsers), ``session`` (the session object and the run of one
variant), ``benchmark_patches`` (every patch of pytest-benchmark's private API)."""
