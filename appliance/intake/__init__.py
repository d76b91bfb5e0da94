"""Hangar intake: signed bundles, resumable uploads, staging, atomic activation, A/B slots."""
