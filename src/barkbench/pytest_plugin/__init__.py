"""barkbench's pytest plugin: ``plugin`` (the hooks and fixtures, loaded through the ``pytest11`` entry point),
``options`` (the ``--bark-*`` options and their typed parsers), ``config`` (the options read once, and what the
session measures from them), ``session`` (the session object and the run of one variant), ``recording`` (a
variant's measurement replayed into pytest-benchmark and its record written), ``progress`` (the terminal lines),
``signals`` (SIGINT and SIGTERM), ``benchmark_patches`` (every patch of pytest-benchmark's private API). The
measuring itself is ``barkbench.measure.engine``'s."""
