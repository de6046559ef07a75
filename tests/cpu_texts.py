"""Real text and sentence-transformers fp32 reference embeddings for the CPU and quantization fidelity tests."""
import functools

import numpy as np

N_FIRST = 64  # the first paragraphs of the corpus, in order (short and medium prose) ...
N_LONGEST = 16  # ... plus the longest of the first 1,500 (truncated at 256 tokens)


@functools.lru_cache(maxsize=None)
def real_text_reference() -> tuple[list[str], np.ndarray]:
    """(texts, sentence-transformers fp32 embeddings ``[N, 384]``), computed once per session."""
    import fastbert
    from benchmarks.corpus import first_paragraphs
    from sentence_transformers import SentenceTransformer

    pool = first_paragraphs(1500)
    longest = sorted(pool[N_FIRST:], key=len, reverse=True)[:N_LONGEST]
    texts = pool[:N_FIRST] + longest
    st = SentenceTransformer(fastbert.default_model_path(), device="cpu")
    return texts, st.encode(texts, batch_size=32)


def encode_fastbert(path: str, texts: list[str], mode: str | None) -> np.ndarray:
    """fastbert's encode path (``SentenceEncoder`` on CPU), optionally quantized."""
    from fastbert.embeddings.sentence_encoder import SentenceEncoder

    return SentenceEncoder(path, device="cpu", quantize=mode).encode(texts, batch_size=64)
