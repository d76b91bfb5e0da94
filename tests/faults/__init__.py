"""Fault-injection tests and tools (power cuts, link faults)."""
