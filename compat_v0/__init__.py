"""compat_v0: the Orbax v0 API (CheckpointManager, args.*, checkpointers) over orbax_v1.

Not implemented yet; see issue 6. Built on the public `orbax_v1` API only.
"""
