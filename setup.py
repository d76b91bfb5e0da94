"""Package list for setuptools (the rest of the metadata is in pyproject.toml), and the compiled hot path.

``pyproject.toml`` alone cannot both discover packages and add one that lives elsewhere, so the list is
made here: everything under ``appliance/`` and ``media/``, plus the top-level ``migrations/`` folder
(alembic's env and versions), shipped inside the wheel as the package ``appliance.migrations`` so that
an installed image can migrate its journal (``appliance.store.migrate`` finds it with importlib.resources).

With ``APPLIANCE_COMPILE=1`` the avionics hot path (``appliance.compiled.MODULES``) is compiled with
mypyc (needs mypy, a C compiler and the Python headers; without build isolation, so that mypy sees
the installed ``firmware_bridge``): ``make deps`` builds it in place, the image build into the
wheel. Without it the wheel is pure Python (the same behaviour, about 2x slower on the chain).
"""

import os
import runpy
from pathlib import Path

from setuptools import find_namespace_packages, setup

HERE = Path(__file__).resolve().parent
ext_modules = []
if os.environ.get("APPLIANCE_COMPILE") == "1":
    from mypyc.build import mypycify

    os.chdir(HERE)  # mypyc names the modules by their paths from here
    # the firmware bridge's types (an editable install is out of mypy's sight: without them the
    # compiled code would treat its frames and labels as Any, through slow generic operations)
    os.environ["MYPYPATH"] = os.pathsep.join(
        filter(None, [str(HERE / "firmware-bridge"), os.environ.get("MYPYPATH")]))
    modules = runpy.run_path(str(HERE / "appliance" / "compiled.py"))["MODULES"]
    ext_modules = mypycify([m.replace(".", "/") + ".py" for m in modules], opt_level="3",
                           group_name="appliance.hotpath")

setup(
    packages=[
        *find_namespace_packages(include=["appliance*", "media*"]),
        "appliance.migrations",
        "appliance.migrations.versions",
    ],
    package_dir={"appliance.migrations": "migrations"},
    ext_modules=ext_modules,
)
