"""compat_v0 is built on the public orbax_v1 API only, and exports the v0 surface.

The import rule: compat_v0 may import names exported by `orbax_v1`, `orbax_v1.handlers`,
`orbax_v1.training`, `orbax_v1.errors` and the public submodules
`orbax_v1.training.{save_decision_policies, preservation_policies, errors}`; never a
module or name starting with `_`, never `orbax`.
"""

from __future__ import annotations

import ast
import importlib

import pytest
from conftest import REPO

PUBLIC_MODULES = {
    "orbax_v1", "orbax_v1.errors", "orbax_v1.handlers", "orbax_v1.storage", "orbax_v1.training",
    "orbax_v1.training.save_decision_policies", "orbax_v1.training.preservation_policies",
    "orbax_v1.training.errors",
}
SOURCES = sorted((REPO / "compat_v0").rglob("*.py"))


def _public_names(module_name: str) -> set[str]:
    module = importlib.import_module(module_name)
    names = set(getattr(module, "__all__", ()))
    names |= {n for n in vars(module) if not n.startswith("_")}
    return names


def _violations(source) -> list[str]:
    tree = ast.parse(source.read_text(), str(source))
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                name = alias.name
                if name == "orbax" or name.startswith("orbax.") or name.startswith("orbax_v1") and name not in PUBLIC_MODULES:
                    bad.append(f"import {name}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            module = node.module
            if module == "orbax" or module.startswith("orbax."):
                bad.append(f"from {module}")
            elif module.startswith("orbax_v1"):
                if module not in PUBLIC_MODULES:
                    bad.append(f"from {module}")
                    continue
                public = _public_names(module)
                for alias in node.names:
                    full = f"{module}.{alias.name}"
                    if alias.name.startswith("_") or (
                            alias.name not in public and full not in PUBLIC_MODULES):
                        bad.append(f"from {module} import {alias.name}")
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not (
                node.attr.startswith("__")):
            value = node.value
            dotted = []
            while isinstance(value, ast.Attribute):
                dotted.append(value.attr)
                value = value.value
            if isinstance(value, ast.Name) and value.id == "orbax_v1":
                bad.append(f"orbax_v1.{'.'.join(reversed(dotted + [node.attr]))}")
    return bad


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_compat_v0_imports_only_public_orbax_v1(source):
    assert not _violations(source), _violations(source)


def test_the_rule_catches_private_imports(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import orbax.checkpoint\nfrom orbax_v1 import _api\n"
                      "from orbax_v1._checkpointables import save\nimport orbax_v1._layout\n"
                      "from orbax_v1.training import _steps\nimport orbax_v1\n"
                      "x = orbax_v1._background\nfrom orbax_v1 import load\n")
    assert len(_violations(sample)) == 6


V0_SURFACE = [
    "CheckpointManager", "CheckpointManagerOptions", "Checkpointer", "AsyncCheckpointer",
    "StandardCheckpointer", "PyTreeCheckpointer", "StandardCheckpointHandler",
    "PyTreeCheckpointHandler", "JsonCheckpointHandler", "ArrayCheckpointHandler",
    "CompositeCheckpointHandler", "SaveArgs", "RestoreArgs", "ArrayRestoreArgs", "PLACEHOLDER",
    "args.StandardSave", "args.StandardRestore", "args.PyTreeSave", "args.PyTreeRestore",
    "args.JsonSave", "args.JsonRestore", "args.ArraySave", "args.ArrayRestore", "args.Composite",
    "handlers.DefaultCheckpointHandlerRegistry", "utils.to_shape_dtype_struct",
    "tree.to_shape_dtype_struct", "test_utils.erase_and_create_empty",
    "checkpoint_managers.save_decision_policy.FixedIntervalPolicy",
    "checkpoint_managers.preservation_policy.LatestN",
    "type_handlers.SaveArgs", "type_handlers.RestoreArgs", "type_handlers.ArrayRestoreArgs",
    "checkpoint_manager.StepAlreadyExistsError", "step.standard_name_format",
]


@pytest.mark.parametrize("name", V0_SURFACE)
def test_v0_surface_exists(name):
    import compat_v0
    obj = compat_v0
    for part in name.split("."):
        obj = getattr(obj, part)


def test_all_lists_exactly_the_public_names():
    import compat_v0
    public = sorted(n for n in vars(compat_v0) if not n.startswith("_"))
    assert sorted(compat_v0.__all__) == public
