"""The import graph at package level, as text (``make imports``), for before/after pictures.

Each line is one edge ``appliance.X -> appliance.Y`` between the packages (or top-level modules) of
the project, with the number of module-level imports behind it and, with ``--detail``, which ones.
The graph comes from grimp (import-linter's engine), so it is what the contracts in pyproject.toml see.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict

import grimp

ROOTS = ("appliance", "firmware_bridge", "ground_receiver")


def unit(module: str) -> str:
    """The package-level node of ``module``: ``appliance.X`` for the service, else the root package."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "appliance" else parts[0]


def package_edges() -> dict[tuple[str, str], list[tuple[str, str]]]:
    """Edges between units, each with the module-level imports behind it."""
    graph = grimp.build_graph(*ROOTS, cache_dir=None)
    edges: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            a, b = unit(importer), unit(imported)
            if a != b:
                edges[(a, b)].append((importer, imported))
    return dict(edges)


def main(argv: list[str] | None = None) -> int:
    """Print the package-level edges, grouped by importer."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detail", action="store_true", help="list the module-level imports of each edge")
    args = parser.parse_args(argv)
    here = os.path.dirname(os.path.abspath(__file__))
    # Run as a script, this folder would come first on sys.path and its tests/firmware_bridge/
    # would stand in for the real package.
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    edges = package_edges()
    units = sorted({u for edge in edges for u in edge})
    print(f"# import graph: {len(units)} packages/modules, {len(edges)} package-level edges")
    for importer in units:
        out = sorted((b, imports) for (a, b), imports in edges.items() if a == importer)
        if not out:
            continue
        print(f"{importer} -> " + ", ".join(f"{b} ({len(imports)})" for b, imports in out))
        if args.detail:
            for _b, imports in out:
                for a, b in imports:
                    print(f"    {a} -> {b}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
