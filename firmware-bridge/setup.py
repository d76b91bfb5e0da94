"""The firmware bridge's compiled module (the rest of the metadata is in pyproject.toml).

With ``APPLIANCE_COMPILE=1`` the card's frame decoder (``appliance.compiled.BRIDGE_MODULES``) is
compiled with mypyc, as the appliance's hot path is (see the appliance's ``setup.py``); without it
the wheel is pure Python.
"""

import os
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent
#: As appliance.compiled.BRIDGE_MODULES (this package does not depend on the appliance).
MODULES = ("firmware_bridge.frame",)
ext_modules = []
if os.environ.get("APPLIANCE_COMPILE") == "1":
    from mypyc.build import mypycify

    os.chdir(HERE)
    ext_modules = mypycify([m.replace(".", "/") + ".py" for m in MODULES], opt_level="3")

setup(ext_modules=ext_modules)
