"""Alembic's environment and the journal's schema revisions, installed as ``appliance.migrations``.

The folder is top-level in the source tree and mapped into the package by ``setup.py``; alembic loads
``env.py`` and ``versions/*.py`` by path (see ``appliance.store.migrate``), nothing imports them.
"""
