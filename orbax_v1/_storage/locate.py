"""Where each value of an OCDBT database lies, found without reading any value.

TensorStore's `ocdbt.dump` decodes the manifest and b+tree nodes into JSON. Walking the
tree of the latest version gives, for every key, either the value itself (small values
are stored inline in the leaf nodes) or an `Extent`: the data file, offset and length of
its bytes, which the array engine then reads straight into its result.

Two rules of the format (TensorStore's kvstore/ocdbt/index.rst) shape the walk:

* Keys inside a child node are relative: a key's full name is every
  `subtree_common_prefix` on the way down from the root, then the entry's own key.
* A data file's path is relative to the database root. A node reached through another
  database's files (the per-process databases a merge points at) carries that
  database's directory as a transitive prefix; `dump` has already added it to the
  references it prints, so the paths printed are root-relative as they stand.

A reference that resolves to a path outside the database directory is refused
(`BadReferenceError`): nothing is ever read from outside a checkpoint.
"""

from __future__ import annotations

import os
import urllib.parse

import attrs
import tensorstore as ts


class BadReferenceError(ValueError):
    """A node or value reference that is malformed or points outside the database."""


@attrs.frozen
class Extent:
    """Where one value's bytes lie: `length` bytes at `offset` in the file `path`."""

    path: str
    offset: int
    length: int


Location = bytes | Extent  # an inline value, or where an out-of-line one lies


class _References:
    """Parses `<label>:<base path>:<relative path>:<offset>:<length>` references,
    resolving each data file once."""

    def __init__(self, root: str):
        self._root = os.path.normpath(os.path.abspath(root))
        self._paths: dict[str, str] = {}

    def path(self, base_path: str, relative_path: str) -> str:
        name = base_path + ":" + relative_path
        found = self._paths.get(name)
        if found is None:
            relative = urllib.parse.unquote(base_path) + urllib.parse.unquote(relative_path)
            found = os.path.normpath(os.path.join(self._root, relative))
            if (os.path.isabs(relative) or "\0" in relative
                    or os.path.commonpath([self._root, found]) != self._root
                    or found == self._root):
                raise BadReferenceError(
                    f"the data file {relative!r} lies outside the database {self._root}")
            self._paths[name] = found
        return found

    def parse(self, reference: str, label: str) -> tuple[str, Extent]:
        parts = reference.split(":")
        try:
            if len(parts) != 5 or parts[0] != label:
                raise ValueError
            offset, length = int(parts[3]), int(parts[4])
            if offset < 0 or length < 0:
                raise ValueError
        except ValueError:
            raise BadReferenceError(f"malformed {label} reference {reference!r}") from None
        return reference, Extent(self.path(parts[1], parts[2]), offset, length)


def _dump(base: ts.KvStore, node: str | None, context: ts.Context | None):
    return ts.ocdbt.dump(base, node, context=context)


def locate_values(directory: str, context: ts.Context | None = None) -> dict[bytes, Location]:
    """Every key of the OCDBT database in `directory` -> its inline value or `Extent`.

    Reads the manifest and the b+tree nodes of the latest version (the nodes of one
    level concurrently), and no values.
    """
    base = ts.KvStore.open({"driver": "file", "path": directory.rstrip("/") + "/"},
                           context=context).result()
    refs = _References(directory)
    manifest = _dump(base, None, context).result()
    versions = manifest.get("versions") or []
    if not versions:
        return {}
    latest = max(versions, key=lambda v: v["generation_number"])
    root = latest.get("root", {}).get("location")
    if root is None:  # an empty database
        return {}
    out: dict[bytes, Location] = {}
    level = [(b"", root)]  # (key prefix, node reference)
    while level:
        pending = []
        for prefix, location in level:
            refs.parse(location, "btreenode")  # refused before it is read
            pending.append((prefix, _dump(base, location, context)))
        level = []
        for prefix, future in pending:
            node = future.result()
            entries = node.get("entries", [])
            if node.get("height", 0) > 0:
                level.extend((prefix + e["subtree_common_prefix"], e["location"])
                             for e in entries)
                continue
            for e in entries:
                key = prefix + e["key"]
                if "inline_value" in e:
                    out[key] = bytes(e["inline_value"])
                else:
                    out[key] = refs.parse(e["indirect_value"], "value")[1]
    return out
