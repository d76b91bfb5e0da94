"""The avionics interface card contract: frame protocol, ARINC 429 codec, label table, simulator."""
