"""NumPyro guides built from a formula flow.

>>> guide = guides.AutoFlow(model, "planar*8")   # drop-in NumPyro autoguide
"""

from guides.autoflow import AutoFlow

__all__ = ["AutoFlow"]
