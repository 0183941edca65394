"""Storage: the only package that touches files, object stores and TensorStore.

Paths (`paths`) resolve to a local directory or a `gs://` / `s3://` prefix; `files`
and `commit` give the layers above their few operations (read and write small files,
list, delete, commit) over either backend. The array engine's write side (`writer`,
with `ocdbt`, `datafile`, `objectfile`) and read side (`reader`, with `locate`,
`fileread`, `pagecache`) are siblings: neither imports the other; what both need
lives in `format`, `kvstore`, `aligned` and `libc`.
"""
