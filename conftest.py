# Thin layer: the options, fixtures and hooks live in the barkbench package.
pytest_plugins = ["barkbench.plugin"]
