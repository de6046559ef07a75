"""The encoder wing: BERT-family checkpoints -> token embeddings, on fastbert's op seam.

Read in this order: :mod:`.families` (each family as data: config translation, weight names) -> :mod:`.config`
(``BertConfig``) -> :mod:`.weights` (checkpoint reading, ``remap_state_dict``, strict load) -> :mod:`.inputs`
(checks) -> :mod:`.packing` (the layout decided once at the edge) -> :mod:`.model` (the forward pass) ->
:mod:`.ops` (the op seam) -> :mod:`.layout` and :mod:`.backends` (one module per backend: PyTorch/oneDNN, Triton;
CPU features). :mod:`.precision` turns a loaded model into a reduced-precision one; :mod:`.swap` runs
the same forward pass inside a ``transformers`` model (``fastbert.optimize``). The public names are exported by
``fastbert`` itself; this package imports nothing on its own, so its JSON-only parts load without torch.
"""
