"""lightning-lab: the ideas of numpy_core in PyTorch Lightning, with experiments to compare them."""
__version__ = "0.1.0"
