"""The errors of fastbert's tokenizers beyond Python's own: each is also the exception type transformers raises in
the same case, so code written for transformers keeps catching it."""


class InputTypeError(TypeError, ValueError):
    """An input of the wrong type. A ``TypeError``; also a ``ValueError``, which transformers raises for it."""


class OutOfRangeError(ValueError, OverflowError):
    """A negative or too large number (a length, a stride, a token id). A ``ValueError``; also an
    ``OverflowError``, which transformers raises for it."""
