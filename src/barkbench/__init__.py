"""barkbench: measure Hugging Face Bark's generate across optimization variants with pytest-benchmark."""

__version__ = "0.1.0"
