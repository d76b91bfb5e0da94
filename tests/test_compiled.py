"""The compiled hot path (appliance.compiled): what runs compiled, and the switch to the source."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from appliance import compiled

PROBE = ("import json, sys; from appliance import compiled; import appliance.avionics.chain, "
         "firmware_bridge.frame; print(json.dumps([compiled.status(), "
         "[sys.modules[m].__file__ for m in compiled.MODULES + compiled.BRIDGE_MODULES]]))")


def probe(pure: bool) -> tuple[dict[str, bool], list[str]]:
    env = {k: v for k, v in os.environ.items() if k != compiled.PURE_ENV}
    if pure:
        env[compiled.PURE_ENV] = "1"
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, check=True, capture_output=True,
                         text=True)
    status, files = json.loads(out.stdout)
    return status, files


def test_the_source_switch_loads_every_module_from_its_py_file() -> None:
    status, files = probe(pure=True)
    assert set(status) == set(compiled.MODULES + compiled.BRIDGE_MODULES)
    assert not any(status.values())
    assert all(f.endswith(".py") for f in files)


def test_the_built_checkout_runs_the_hot_path_compiled() -> None:
    status, files = probe(pure=False)
    if not any(status.values()):
        pytest.skip("not built with mypyc (make deps)")
    assert all(status.values()), status  # all of them or none: one build
    assert not any(f.endswith(".py") for f in files)
    assert compiled.stale() == []


def test_the_switch_refuses_once_a_compiled_module_is_loaded() -> None:
    if not compiled.status()["appliance.avionics.chain"] or os.environ.get(compiled.PURE_ENV):
        pytest.skip("the chain is not compiled here")
    import appliance.avionics.chain  # noqa: F401

    with pytest.raises(RuntimeError, match="already imported compiled"):
        compiled.use_source()
