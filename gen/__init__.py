"""gen: training-free attention methods for diffusers models.

Heavy dependencies (torch, diffusers) are imported lazily by the submodules that
need them, so `gen --help` and input validation stay fast.
"""

__version__ = "0.1.0"
