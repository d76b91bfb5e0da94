"""Avionics inputs: bus sources, decoding and validity agents, the latest-value store, UTC."""
