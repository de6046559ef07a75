"""``SentenceEncoder``: sentence-transformers' ``encode`` on fastbert's tokenizer and encoder.

>>> encoder = fastbert.SentenceEncoder()                     # the bundled all-MiniLM-L6-v2; or a local folder
>>> encoder.encode(["A first text.", "A second one."])       # float32 numpy [2, 384], input order
>>> encoder.encode("One text.")                              # [384]

The pipeline is the folder's (see :mod:`.folder`): tokenize (prompt prepended, truncation at
``max_seq_length``), encode, pool, Dense/Normalize modules, then ``truncate_dim`` and ``normalize_embeddings``
as ``SentenceTransformer.encode`` applies them. Texts are sorted by token count and cut into batches of at most
``batch_size`` texts and ``max_batch_tokens`` padded tokens, so short texts batch wide and long ones stay within
memory; results come back in input order. Pooling and the modules after it run in float32 whatever the encoder's
dtype, and embeddings are returned as float32.
"""
from __future__ import annotations

import os
import re
import sys
from typing import Iterable, Sequence

import numpy as np
import torch

from ..encoder.config import BertConfig
from . import pooling as P
from .batching import (DEFAULT_MAX_BATCH_TOKENS, TokenizedTexts, TruncationError, check_encode_options,
                       padded_batch, text_list, token_budget_batches, tokenize)
from .folder import SentenceFolder, default_model_path, read_folder
from .head import EmbeddingHead

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_DEVICE = re.compile(r"(cpu|cuda)(:\d+)?")
__all__ = ["SentenceEncoder", "TokenizedTexts", "TruncationError", "DEFAULT_MAX_BATCH_TOKENS", "load_encoder", "resolve_device",
           "resolve_dtype", "token_budget_batches"]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` -> ``cuda`` when available, else ``cpu``. Anything but ``cpu``/``cuda[:N]`` is a ``ValueError``, as
    is a CUDA device this machine does not have."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    text = str(device)
    if not _DEVICE.fullmatch(text):
        raise ValueError(f"unknown device {text!r}; fastbert runs on 'cpu' or 'cuda' (e.g. 'cuda:1')")
    device = torch.device(text)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {text!r} requested but CUDA is not available on this machine "
                             f"(torch {torch.__version__}); use 'cpu'")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {text!r} requested but this machine has {torch.cuda.device_count()} CUDA "
                             "device(s)")
    return device


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``None``/``"auto"`` -> float16 on CUDA, float32 elsewhere; else one of float32, float16, bfloat16."""
    if dtype is None or dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; expected one of {['auto', *DTYPES]}")
        return DTYPES[dtype]
    if dtype not in DTYPES.values():
        raise ValueError(f"unsupported dtype {dtype}; fastbert runs in float32, float16 or bfloat16")
    return dtype


def load_encoder(path: str | None = None, device: str | None = None, dtype: str | None = None,
                 **encoder_kwargs) -> "SentenceEncoder":
    """``SentenceEncoder(path, device, dtype, **encoder_kwargs)``: the one place that builds encoders for the
    pool's workers and fastbert.ray's actors (``path`` default: the bundled all-MiniLM-L6-v2)."""
    return SentenceEncoder(path, device, dtype, **encoder_kwargs)


class SentenceEncoder:
    """Embed texts like ``sentence_transformers.SentenceTransformer`` does, with fastbert's encoder.

    Args:
        path: a local model folder (sentence-transformers or plain Hugging Face) of any family in
            :data:`fastbert.config.FAMILIES`; ``None``: the bundled all-MiniLM-L6-v2. Only local folders are read.
            The model comes from :class:`fastbert.AutoModel`, the tokenizer from :class:`fastbert.AutoTokenizer`.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``; ``None``: CUDA when available.
        dtype: ``"float32"``, ``"float16"``, ``"bfloat16"`` (or the torch dtype); ``None``: float16 on CUDA,
            float32 on CPU.
        max_seq_length: truncation length in tokens (special tokens included); ``None``: the folder's, at most
            the family's positions (``BertConfig.max_length``: RoBERTa/XLM-R 512 for max_position_embeddings 514).
        pooling: override the folder's pooling mode(s) (one of ``POOLING_MODES`` or a sequence of them).
        normalize: ``True`` appends an L2 normalisation, ``False`` drops the folder's Normalize modules;
            ``None`` keeps the folder's.
        backend: the op seam's backend (``None``: automatic, see :mod:`fastbert.ops`).
        quantize: a reduced-precision mode applied after loading: ``"bfloat16"`` or ``"auto"``
            (see :mod:`fastbert.quantize`; ``dtype`` then becomes the model's); ``None``: none.

    Settings fastbert cannot reproduce raise ``ValueError`` (naming file, module and setting), a missing folder or
    unreadable file ``OSError``; both before any weights are read.

    Attributes: ``folder`` (what the folder says), ``tokenizer`` (``fastbert.BertTokenizer`` or
    ``fastbert.tokenizers.TokenizersTokenizer``), ``model`` (``fastbert.BertModel``), ``device``,
    ``dtype``, ``max_seq_length`` (settable), ``prompts``, ``default_prompt_name``, ``last_truncated`` (how many
    texts the last ``encode`` call truncated).
    """

    def __init__(self, path: str | os.PathLike | None = None, device: str | torch.device | None = None,
                 dtype: str | torch.dtype | None = None, *, max_seq_length: int | None = None,
                 pooling: str | Sequence[str] | None = None, normalize: bool | None = None,
                 backend: str | None = None, quantize: str | None = None):
        from ..encoder.precision import check_mode

        self.quantize = None if quantize is None else check_mode(quantize)
        if path is None:
            path = default_model_path()
        self.folder: SentenceFolder = read_folder(path)
        # What worker processes need to build the same encoder (dtype as given: auto picks per device).
        self._options = dict(dtype=dtype, pooling=pooling, normalize=normalize, backend=backend, quantize=quantize)
        self.config = BertConfig.from_pretrained(self.folder.transformer_path)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.backend = backend
        self.head = EmbeddingHead(self.folder, self.config.hidden_size, pooling, normalize)
        self.prompts = dict(self.folder.prompts)
        self.default_prompt_name = self.folder.default_prompt_name
        self.last_truncated = 0
        self.tokenizer = self._load_tokenizer()
        self.max_seq_length = self._default_max_length() if max_seq_length is None else max_seq_length
        self._load_model()

    # ------------------------------------------------------------------ loading
    @property
    def pooling(self):
        """The pooling mode(s) (:class:`~fastbert.embeddings.folder.Pooling`)."""
        return self.head.pooling

    @property
    def head_modules(self):
        """The Dense / Normalize modules after pooling, in order."""
        return self.head.modules

    @property
    def embedding_dimension(self) -> int:
        return self.head.dimension

    def _load_tokenizer(self):
        from ..tokenizers import AutoTokenizer, with_lowercase

        tokenizer = AutoTokenizer.from_pretrained(self.folder.transformer_path)
        return with_lowercase(tokenizer) if self.folder.do_lower_case else tokenizer

    def _default_max_length(self) -> int:
        positions = self.config.max_length  # the family's usable positions (RoBERTa: max_position_embeddings - 2)
        if self.folder.max_seq_length is not None:
            if self.folder.max_seq_length > positions:
                raise ValueError(f"{self.folder.path}: max_seq_length {self.folder.max_seq_length} exceeds the "
                                 f"model's {self._positions()}; pass a smaller max_seq_length")
            return self.folder.max_seq_length
        if self.folder.sentence_transformers:  # the tokenizer's model_max_length, capped at the positions
            return min(self.tokenizer.model_max_length, positions)
        return positions

    @property
    def max_seq_length(self) -> int:
        """Texts are truncated to this many tokens ([CLS] and [SEP] included)."""
        return self._max_seq_length

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        positions = self.config.max_length
        if not isinstance(value, int) or isinstance(value, bool) or not 2 <= value <= positions:
            raise ValueError(f"max_seq_length must be an integer from 2 ([CLS] + [SEP]) to the model's "
                             f"{self._positions()}, got {value!r}")
        self._max_seq_length = value

    def _positions(self) -> str:
        """The longest input, in words: BERT's max_position_embeddings, RoBERTa's less its position offset."""
        config = self.config
        offset = f" less its position offset {config.position_offset} = {config.max_length}" \
            if config.position_offset else ""
        return f"max_position_embeddings {config.max_position_embeddings}{offset}"

    def _load_model(self) -> None:
        """Read the weights onto ``self.device`` in ``self.dtype``: the one place that decides how the model is
        stored (a precision or quantization mode changes this method only)."""
        from ..encoder.model import AutoModel

        self.model = AutoModel.from_pretrained(self.folder.transformer_path, dtype=self.dtype, device=self.device,
                                               backend=self.backend, add_pooling_layer=False)
        if self.quantize is not None:
            from ..encoder.precision import quantize

            quantize(self.model, self.quantize)
            self.dtype = self.model.embeddings.word.weight.dtype
        self.head.load(self.device)

    def get_sentence_embedding_dimension(self) -> int:
        """The size of the embeddings ``encode`` returns (before ``truncate_dim``)."""
        return self.embedding_dimension

    def __repr__(self) -> str:
        head = ", ".join(type(m).__name__ for m in self.head_modules)
        return (f"SentenceEncoder({self.folder.path!r}, device={str(self.device)!r}, dtype={self.dtype}, "
                f"max_seq_length={self.max_seq_length}, pooling={self.pooling.modes}, head=[{head}], "
                f"dim={self.embedding_dimension})")

    # ------------------------------------------------------------------ encoding
    def encode(
        self,
        texts: str | Sequence[str],
        prompt_name: str | None = None,
        prompt: str | None = None,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        *,
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        normalize_embeddings: bool = False,
        truncate_dim: int | None = None,
        max_batch_tokens: int | None = DEFAULT_MAX_BATCH_TOKENS,
        truncation: bool = True,
        pool=None,
    ):
        """Embed ``texts`` (a str or a sequence of str), in input order.

        Returns, as ``SentenceTransformer.encode`` does: a float32 numpy array [N, D] (default), one tensor [N, D]
        on ``self.device`` (``convert_to_tensor=True``), or a list of N tensors [D] (``convert_to_numpy=False``);
        a single str gives one row [D]. An empty sequence gives [0, D].

        ``prompt_name`` picks one of ``self.prompts``; ``prompt`` is prepended as is (and wins over
        ``prompt_name``); with neither, the folder's ``default_prompt_name`` applies. ``batch_size``: texts per
        batch; ``max_batch_tokens``: padded tokens per batch (``None``: no limit). ``truncation=False`` makes a
        text longer than ``max_seq_length`` a :class:`TruncationError` (raised before any encoding); otherwise
        such texts are truncated and ``self.last_truncated`` says how many were. ``show_progress_bar`` counts
        texts on stderr (``None``: off). ``pool``: a :meth:`start_multi_process_pool` pool does the work (numpy
        output only).
        """
        single = isinstance(texts, str)
        texts = [texts] if single else text_list(texts)
        if pool is not None:
            result = self._encode_on_pool(pool, texts, batch_size, prompt_name, prompt, show_progress_bar,
                                          convert_to_numpy, convert_to_tensor, normalize_embeddings, truncate_dim,
                                          max_batch_tokens, truncation)
            return result[0] if single else result
        check_encode_options(batch_size, max_batch_tokens, truncate_dim)
        tokens = self._tokenize_with_prompt(texts, self._resolve_prompt(prompt, prompt_name), truncation)
        self.last_truncated = tokens.truncated
        as_tensor = convert_to_tensor or not convert_to_numpy
        out = self._embed_tokens(tokens, batch_size, max_batch_tokens, truncate_dim, normalize_embeddings,
                                 self.device if as_tensor else torch.device("cpu"), bool(show_progress_bar))
        result = out if convert_to_tensor else out.numpy() if convert_to_numpy else list(out.unbind(0))
        return result[0] if single else result

    def tokenize_texts(self, texts: Sequence[str], prompt_name: str | None = None, prompt: str | None = None, *,
                       truncation: bool = True) -> TokenizedTexts:
        """The tokens ``encode(texts, prompt_name, prompt, truncation=truncation)`` would embed, without embedding
        them (same prompt rule, same truncation, same :class:`TruncationError`). Changes nothing on ``self``, so it
        may run on another thread than :meth:`encode_tokenized`."""
        return self._tokenize_with_prompt(text_list(texts), self._resolve_prompt(prompt, prompt_name), truncation)

    def encode_tokenized(self, tokens: TokenizedTexts, batch_size: int = 32, *, normalize_embeddings: bool = False,
                         truncate_dim: int | None = None,
                         max_batch_tokens: int | None = DEFAULT_MAX_BATCH_TOKENS) -> np.ndarray:
        """Embeddings of :meth:`tokenize_texts` output: float32 numpy [N, D], in order; exactly what ``encode``
        returns for the same texts and options (``encode`` is ``tokenize_texts`` followed by this)."""
        check_encode_options(batch_size, max_batch_tokens, truncate_dim)
        return self._embed_tokens(tokens, batch_size, max_batch_tokens, truncate_dim, normalize_embeddings,
                                  torch.device("cpu"), False).numpy()

    def _tokenize_with_prompt(self, texts: list[str], prompt: str | None, truncation: bool) -> TokenizedTexts:
        texts_in = [prompt + t for t in texts] if prompt else texts
        ids, offsets, truncated = tokenize(self.tokenizer, texts_in, self.max_seq_length, truncation)
        prompt_length = self._prompt_length(prompt) if prompt and not self.pooling.include_prompt else 0
        return TokenizedTexts(ids, offsets, truncated, prompt_length)

    def _embed_tokens(self, tokens: TokenizedTexts, batch_size: int, max_batch_tokens: int | None,
                      truncate_dim: int | None, normalize_embeddings: bool, out_device: torch.device,
                      progress: bool) -> torch.Tensor:
        """Embeddings [N, D'] float32 on ``out_device`` (D' = ``truncate_dim`` when given), in order."""
        dim = self.embedding_dimension if truncate_dim is None else min(truncate_dim, self.embedding_dimension)
        out = torch.full((len(tokens), dim), float("nan"), device=out_device)  # a row never written would show
        from tqdm.auto import tqdm

        with tqdm(total=len(tokens), unit="text", desc="encoding", disable=not progress,
                  file=sys.stderr) as bar, torch.inference_mode():
            for batch in token_budget_batches(tokens.lengths.tolist(), batch_size, max_batch_tokens):
                emb = self._embed_batch(tokens.ids, tokens.offsets, batch, tokens.prompt_length)[:, :dim]  # [b, D']
                if normalize_embeddings:
                    emb = P.normalize(emb)
                out[torch.tensor(batch, device=out_device)] = emb.to(out_device)
                bar.update(len(batch))
        return out

    def _encode_on_pool(self, pool, texts, batch_size, prompt_name, prompt, show_progress_bar, convert_to_numpy,
                        convert_to_tensor, normalize_embeddings, truncate_dim, max_batch_tokens, truncation):
        if convert_to_tensor or not convert_to_numpy:
            raise ValueError("encode with a pool returns numpy arrays; leave convert_to_numpy/_tensor alone")
        result = pool.encode(texts, batch_size, prompt_name=prompt_name, prompt=prompt,
                             show_progress_bar=bool(show_progress_bar), normalize_embeddings=normalize_embeddings,
                             truncate_dim=truncate_dim, max_batch_tokens=max_batch_tokens, truncation=truncation)
        self.last_truncated = pool.last_truncated
        return result

    def start_multi_process_pool(self, target_devices=None, threads_per_worker: int | None = None):
        """Worker processes on ``target_devices`` (``["cuda:0", "cuda:1"]``, a number of CPU workers; ``None``:
        every GPU, else one per core), each with this encoder's folder and settings: pass it to
        ``encode(..., pool=pool)``, stop it with :meth:`stop_multi_process_pool` (sentence-transformers' names).
        A :class:`fastbert.embeddings.pool.EncodePool`."""
        from .pool import EncodePool

        return EncodePool(target_devices, self.folder.path, threads_per_worker=threads_per_worker,
                          max_seq_length=self.max_seq_length, **self._options)

    @staticmethod
    def stop_multi_process_pool(pool) -> None:
        """Stops a pool from :meth:`start_multi_process_pool`."""
        pool.close()

    def _resolve_prompt(self, prompt: str | None, prompt_name: str | None) -> str | None:
        """sentence-transformers' rule: ``prompt`` wins, then ``prompt_name``, then the default prompt name."""
        if prompt is not None:
            if not isinstance(prompt, str):
                raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
            return prompt
        if prompt_name is not None:
            if prompt_name not in self.prompts:
                raise ValueError(f"prompt name {prompt_name!r} is not one of the model's prompts "
                                 f"{sorted(self.prompts)}")
            return self.prompts[prompt_name]
        if self.default_prompt_name is not None:
            return self.prompts.get(self.default_prompt_name)
        return None

    def _prompt_length(self, prompt: str) -> int:
        """Tokens of the prompt as sentence-transformers counts them: the prompt tokenized alone (truncated),
        minus a trailing special token."""
        ids = self.tokenizer(prompt, truncation=True, max_length=self.max_seq_length)["input_ids"]
        return len(ids) - (1 if ids and ids[-1] in self.tokenizer.all_special_ids else 0)

    def _embed_batch(self, ids: np.ndarray, offsets: np.ndarray, batch: list[int], prompt_length: int) -> torch.Tensor:
        """The texts ``batch`` -> their embeddings [b, D] float32 on ``self.device``."""
        input_ids, mask = padded_batch(ids, offsets, batch, self.tokenizer.pad_token_id or 0)  # [b, S] each
        input_ids, mask = torch.from_numpy(input_ids).to(self.device), torch.from_numpy(mask).to(self.device)
        hidden = self.model(input_ids, mask).last_hidden_state.float()  # [b, S, H]
        return self.head(hidden, mask, prompt_length)
