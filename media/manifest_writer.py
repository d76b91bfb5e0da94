"""Write ``package.json`` for a package directory: every file with its size and SHA-256."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from appliance.content.manifest import MANIFEST, Manifest
from appliance.content.validate import check_package, file_sha256

__all__ = ["write_manifest"]


def write_manifest(root: Path, fields: dict[str, Any]) -> Manifest:
    """List every file under ``root``, write ``root/package.json`` from ``fields`` + files, check it.

    ``fields`` are the manifest's descriptive fields (id, title, kind, ...). Raises PackageError if
    the result is not a valid package (for example a playlist that names a missing segment).
    """
    files: dict[str, dict[str, Any]] = {}
    for dirpath, _, names in os.walk(root):
        for name in sorted(names):
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            if rel == MANIFEST:
                continue
            files[rel] = {"size": full.stat().st_size, "sha256": file_sha256(full)}
    manifest = Manifest.model_validate({**fields, "files": files})
    (root / MANIFEST).write_text(json.dumps(manifest.model_dump(mode="json"), indent=1) + "\n")
    check_package(root, verify_hashes=False)
    return manifest
