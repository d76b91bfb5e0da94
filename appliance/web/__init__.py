"""Web front ends: the passenger app and the admin app (separate ports and bind addresses)."""
