"""Measurement: loading a variant, running Bark under trackers, in a worker process. Imports torch lazily."""
