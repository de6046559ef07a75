"""``fastbert.ray``: embed Parquet / JSON lines files on a Ray cluster (:mod:`fastbert.embeddings.ray`).

>>> from fastbert.ray import Embedder, embed_files
"""
from .embeddings.ray import (Embedder, EmbedFilesResult, ShardsFailed, connected, embed_files,  # noqa: F401
                             embed_shard, input_files)

__all__ = ["Embedder", "EmbedFilesResult", "ShardsFailed", "connected", "embed_files", "embed_shard", "input_files"]
