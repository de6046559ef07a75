import os

# Without a GPU the Triton kernels run through the interpreter. It must be switched on before triton.jit runs,
# i.e. before anything imports fastbert.kernels.
try:
    import torch

    _cuda = torch.cuda.is_available()
except ImportError:  # pragma: no cover
    _cuda = False
if not _cuda:
    os.environ.setdefault("TRITON_INTERPRET", "1")

import random  # noqa: E402

import pytest  # noqa: E402

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "fastbert makes BERT encoders fast.",
    "Hi",
    "A considerably longer sentence, with punctuation; numbers like 3.14159 and 2024, and some rarer words such as "
    "antidisestablishmentarianism, so that this row is the longest one in the batch by a wide margin.",
    "Über naïve café owners in São Paulo serve crème brûlée.",
    "Sentence embeddings map text to vectors.",
    "Why?",
]


@pytest.fixture
def seed():
    """A fresh seed per test (random inputs drawn fresh each run), reported on failure via the test's id/asserts."""
    s = random.SystemRandom().randrange(2**31)
    torch.manual_seed(s)
    return s


@pytest.fixture(scope="session")
def minilm_path():
    import fastbert

    return fastbert.default_model_path()


@pytest.fixture(scope="session")
def hf_tokenizer(minilm_path):
    from transformers import BertTokenizerFast

    return BertTokenizerFast.from_pretrained(minilm_path)


@pytest.fixture(scope="session")
def hf_minilm(minilm_path):
    from transformers import BertModel

    return BertModel.from_pretrained(minilm_path, attn_implementation="eager").eval()

