"""Names on disk that both sides of the storage package (and the layers above) share.

The file and key names of real Orbax's layout, and the few of our own, in one place so
that the read side never imports the write side to learn them (docs/format.md).
"""

CHECKPOINT_METADATA = "_CHECKPOINT_METADATA"  # step level
PYTREE_METADATA = "_METADATA"
SHARDING = "_sharding"
STRINGS = "_strings.json"
ARRAY_METADATAS = "array_metadatas"
V1_MARKER = "orbax.checkpoint"  # an empty file: written by the v1 free functions
COMMIT_SUCCESS = "commit_success.txt"
TMP_SUFFIX = ".orbax-checkpoint-tmp"
MANIFEST = "manifest.ocdbt"
PROCESS_DIR_PREFIX = "ocdbt.process_"  # each process's own OCDBT database
PACK_KEY = ".orbax_v1_pack"  # ours: small whole arrays, concatenated (see _pytree_save)
