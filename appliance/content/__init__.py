"""Passenger content: packages (manifest, validation), the content store, the catalog, media serving.

The package format (``package.json`` + files) is the contract with the hangar's packaging pipeline
(``media/``), defined once in :mod:`appliance.content.manifest`.
"""
