"""Fogline: DevEdgeOps and an edge data plane for fleets of edge nodes."""

from ._errors import FoglineError

__version__ = "0.1.0"
__all__ = ["FoglineError", "__version__"]
