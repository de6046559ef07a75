"""The embeddings wing: sentence-transformers' semantics on fastbert's tokenizer and encoder.

- :mod:`.folder` reads a sentence-transformers model folder (JSON only, no torch);
- :mod:`.batching` tokenizes texts and cuts them into length-sorted batches within a token budget (numpy only);
- :mod:`.head` and :mod:`.pooling`: pooling, Dense and Normalize after the transformer;
- :mod:`.sentence_encoder` holds :class:`SentenceEncoder` (``SentenceTransformer.encode``'s API);
- :mod:`.pool` / :mod:`.pool_worker`: worker processes on several devices; :mod:`.ray`: Ray Data;
- :mod:`.textfiles` defines a line of input and writes output files atomically (no torch).

This package imports nothing on its own, so the command line can read files and check paths before torch is
imported; the public names are exported by ``fastbert`` itself.
"""
