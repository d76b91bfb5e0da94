"""Package list for setuptools (the rest of the metadata is in pyproject.toml).

``pyproject.toml`` alone cannot both discover packages and add one that lives elsewhere, so the list is
made here: everything under ``appliance/`` and ``media/``, plus the top-level ``migrations/`` folder
(alembic's env and versions), shipped inside the wheel as the package ``appliance.migrations`` so that
an installed image can migrate its journal (``appliance.store.migrate`` finds it with importlib.resources).
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=[
        *find_namespace_packages(include=["appliance*", "media*"]),
        "appliance.migrations",
        "appliance.migrations.versions",
    ],
    package_dir={"appliance.migrations": "migrations"},
)
