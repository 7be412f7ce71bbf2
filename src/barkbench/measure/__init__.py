"""Measuring one variant: ``runner`` (the measured call), ``worker`` (the process transport), ``trackers`` and
``stages`` (latency and memory), ``workload``, ``device``, ``sources`` (where the model comes from), ``summary`` (the
figures from the rounds) and ``optimize`` (one module per axis). Importing this package does not import torch."""
