"""Air/ground, flight phase and mode: pure state machines, the policy table, the engine."""
