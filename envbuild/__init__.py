"""envbuild: declarative recipes for the GPU-cluster communication stack."""

__version__ = "0.1.0"
