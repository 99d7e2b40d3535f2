"""The layers import only downward (docs/architecture.md, "Layers"): every import statement of
every module, lazy ones inside functions included, is checked against the layer order."""
from __future__ import annotations

import ast

from support.paths import ROOT

#: bottom to top; a package may import only the ones before it
LAYERS = ("loihi_numerics", "spikformer_neuro", "compiler", "deploy", "spikeform_cli")
#: third-party packages a layer must not need (the bottom layer is numpy-only)
FORBIDDEN_THIRD_PARTY = {"loihi_numerics": ("torch", "lava", "nir", "h5py", "scipy")}


def _imports(path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]


def test_every_layer_imports_only_the_layers_below():
    offenders = []
    for i, package in enumerate(LAYERS):
        banned = set(LAYERS[i + 1:]) | set(FORBIDDEN_THIRD_PARTY.get(package, ()))
        for path in sorted((ROOT / package).rglob("*.py")):
            offenders += [f"{path.relative_to(ROOT)} imports {name}"
                          for name in _imports(path) if name in banned]
    assert offenders == []


def test_the_check_sees_lazy_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from deploy.lava import run\n    import spikeform_cli\n")
    assert list(_imports(module)) == ["deploy", "spikeform_cli"]
