"""The appliance: the cabin server's one long-running service (see DESIGN.md)."""

__version__ = "0.1.0"
