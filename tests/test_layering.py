"""The house's layers, checked on the source: one storage package touches files and
TensorStore; its read and write sides are siblings; the public surface changes only on
purpose. (That compat_v0 uses only public orbax_v1 names: tests/test_compat_imports.py.)"""

import ast

import pytest

from conftest import REPO

STORAGE = REPO / "orbax_v1" / "_storage"
READ_SIDE = {"reader", "locate", "fileread", "pagecache"}
WRITE_SIDE = {"writer", "ocdbt", "datafile", "objectfile"}
# os functions that touch the filesystem (os.path.join and friends only compute names).
OS_FILE_CALLS = {
    "open", "listdir", "scandir", "makedirs", "mkdir", "remove", "unlink", "rename",
    "replace", "rmdir", "walk", "stat", "lstat", "fsync", "truncate", "symlink", "link",
    "chmod", "utime", "pread", "pwrite", "preadv", "pwritev"}
OS_PATH_FILE_CALLS = {"exists", "lexists", "isfile", "isdir", "islink", "getmtime", "getsize",
                      "realpath", "samefile"}
FILE_MODULES = {"tensorstore", "shutil", "tempfile", "mmap"}


def _sources(package: str):
    return sorted((REPO / package).rglob("*.py"))


def _violations(path) -> list[str]:
    """Where `path` imports a file-touching module or calls a file-touching function."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names
                      if a.name.split(".")[0] in FILE_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in FILE_MODULES:
                found.append(f"from {node.module} import ...")
        elif isinstance(node, ast.Call):
            fn = node.func
            if isinstance(fn, ast.Name) and fn.id == "open":
                found.append(f"open() at line {node.lineno}")
            elif isinstance(fn, ast.Attribute) and isinstance(fn.value, ast.Name):
                if fn.value.id == "os" and fn.attr in OS_FILE_CALLS:
                    found.append(f"os.{fn.attr}() at line {node.lineno}")
            elif (isinstance(fn, ast.Attribute) and isinstance(fn.value, ast.Attribute)
                  and isinstance(fn.value.value, ast.Name) and fn.value.value.id == "os"
                  and fn.value.attr == "path" and fn.attr in OS_PATH_FILE_CALLS):
                found.append(f"os.path.{fn.attr}() at line {node.lineno}")
    return found


def _imported_modules(path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


def test_only_the_storage_package_touches_files_and_tensorstore():
    problems = []
    for source in _sources("orbax_v1"):
        if STORAGE in source.parents:
            continue
        problems += [f"{source.relative_to(REPO)}: {v}" for v in _violations(source)]
    for source in _sources("compat_v0"):
        problems += [f"{source.relative_to(REPO)}: {v}" for v in _violations(source)]
    assert not problems, "\n".join(problems)


def test_the_check_itself_sees_file_access(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os, tensorstore\nos.path.isfile('x')\nopen('y')\nos.listdir('.')\n")
    assert len(_violations(bad)) == 4


@pytest.mark.parametrize("side, other", [(READ_SIDE, WRITE_SIDE), (WRITE_SIDE, READ_SIDE)])
def test_read_and_write_sides_never_import_each_other(side, other):
    for name in side:
        imported = _imported_modules(STORAGE / f"{name}.py")
        crossing = {m for m in imported for o in other
                    if m.endswith(f"._storage.{o}") or m == f"orbax_v1._storage.{o}"}
        assert not crossing, f"_storage/{name}.py imports {crossing}"


def test_shared_storage_modules_import_neither_side():
    shared = {p.stem for p in STORAGE.glob("*.py")} - READ_SIDE - WRITE_SIDE - {"__init__"}
    assert {"format", "kvstore", "paths", "files", "commit"} <= shared
    for name in shared:
        imported = _imported_modules(STORAGE / f"{name}.py")
        crossing = {m for m in imported for o in READ_SIDE | WRITE_SIDE
                    if m.endswith(f"._storage.{o}")}
        assert not crossing, f"_storage/{name}.py imports {crossing}"


# The public surface, as it is on purpose. A change here is an API change: update the
# snapshot in the same commit as the docs that describe it.
ORBAX_V1_PUBLIC = [
    "ArrayHandler", "ArrayMetadata", "AsyncResponse", "CheckpointMetadata", "JsonHandler",
    "PLACEHOLDER", "PyTreeHandler", "ScalarMetadata", "StringMetadata",
    "checkpointables_metadata", "errors", "handlers", "load", "load_async",
    "load_checkpointables", "load_checkpointables_async", "load_pytree", "load_pytree_async",
    "metadata", "pytree_metadata", "save_checkpointables", "save_checkpointables_async",
    "save_pytree", "save_pytree_async", "storage", "training"]
TRAINING_PUBLIC = [
    "Checkpointer", "CheckpointMetadata", "NameFormat", "RootMetadata", "errors",
    "preservation_policies",
    "save_decision_policies", "standard_name_format"]


def _public(module) -> list[str]:
    """Public names the module defines or re-exports from its own package (not the
    `Any` or `Mapping` it imports for annotations)."""
    import types
    out = []
    for name, value in vars(module).items():
        if name.startswith("_"):
            continue
        if isinstance(value, types.ModuleType):
            mine = value.__name__.startswith("orbax_v1.")
        else:
            mine = (getattr(value, "__module__", "") or "").startswith("orbax_v1")
        if mine:
            out.append(name)
    return sorted(out)


STORAGE_PUBLIC = [
    "configure", "exists", "is_committed", "is_dir", "is_file", "is_remote", "join",
    "kvstore_spec", "read_bytes", "remove_checkpoint", "remove_file", "replace_bytes",
    "resolve", "save_files", "subdirs", "write_bytes"]


def test_public_surface_snapshot():
    import orbax_v1
    from orbax_v1 import storage, training
    assert sorted(orbax_v1.__all__) == sorted(ORBAX_V1_PUBLIC)
    assert sorted(training.__all__) == sorted(TRAINING_PUBLIC)
    assert sorted(storage.__all__) == sorted(STORAGE_PUBLIC)
    for module in (orbax_v1, training, storage):
        undeclared = set(_public(module)) - set(module.__all__)
        assert not undeclared, f"{module.__name__} has public names outside __all__: {undeclared}"
