"""``SentenceEncoder``: sentence-transformers' ``encode`` on fastbert's tokenizer and encoder.

>>> encoder = fastbert.SentenceEncoder()                     # the bundled all-MiniLM-L6-v2; or a local folder
>>> encoder.encode(["A first text.", "A second one."])       # float32 numpy [2, 384], input order
>>> encoder.encode("One text.")                              # [384]

The pipeline is the folder's (see :mod:`fastbert.sentence.folder`): tokenize (prompt prepended, truncation at
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
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch

from ..config import BertConfig
from . import pooling as P
from .folder import POOLING_MODES, Dense, Normalize, Pooling, SentenceFolder, read_folder

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
DEFAULT_MAX_BATCH_TOKENS = 16384
_TOKENIZE_CHUNK = 8192  # texts tokenized per call: bounds the memory of Python id lists
_DEVICE = re.compile(r"(cpu|cuda)(:\d+)?")


class TruncationError(ValueError):
    """Texts longer than ``max_seq_length`` tokens when truncation is off. ``indices``: their positions in the
    input, ``lengths``: their token counts."""

    def __init__(self, indices: list[int], lengths: list[int], total: int, max_length: int):
        self.indices, self.lengths, self.max_length = indices, lengths, max_length
        super().__init__(f"{len(indices)} of {total} texts are longer than max_seq_length={max_length} tokens "
                         f"(the first is texts[{indices[0]}], {lengths[0]} tokens)")


@dataclass(frozen=True)
class TokenizedTexts:
    """Texts as ``encode`` feeds them to the model (prompt prepended, truncated), packed back to back.

    ``ids`` [total] int64: every text's token ids in input order; ``offsets`` [N + 1] int64: text ``i`` is
    ``ids[offsets[i]:offsets[i + 1]]``; ``truncated``: how many texts were cut to ``max_seq_length``;
    ``prompt_length``: leading tokens pooling leaves out (0: none). Made by :meth:`SentenceEncoder.tokenize_texts`,
    embedded by :meth:`SentenceEncoder.encode_tokenized`.
    """

    ids: np.ndarray
    offsets: np.ndarray
    truncated: int = 0
    prompt_length: int = 0

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        """Tokens per text, [N] int64."""
        return np.diff(self.offsets)

    @classmethod
    def concat(cls, parts: Sequence["TokenizedTexts"]) -> "TokenizedTexts":
        """The texts of ``parts`` one after the other, in order; all parts must share one ``prompt_length``."""
        if not parts:
            raise ValueError("concat needs at least one TokenizedTexts")
        prompt_lengths = {p.prompt_length for p in parts}
        if len(prompt_lengths) != 1:
            raise ValueError(f"cannot concatenate texts with different prompt lengths {sorted(prompt_lengths)}")
        starts = np.cumsum([0] + [len(p.ids) for p in parts[:-1]])
        offsets = np.concatenate([parts[0].offsets[:1]] + [p.offsets[1:] + s for p, s in zip(parts, starts)])
        return cls(np.concatenate([p.ids for p in parts]), offsets, sum(p.truncated for p in parts),
                   parts[0].prompt_length)


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


def token_budget_batches(lengths: Sequence[int], batch_size: int, max_batch_tokens: int | None) -> list[list[int]]:
    """Indices sorted by length (longest first, ties in input order), cut into batches of at most ``batch_size``
    texts whose padded size (texts x longest) stays within ``max_batch_tokens``. A text longer than the budget
    gets a batch of its own. Every index appears in exactly one batch."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        if batches:
            batch = batches[-1]
            longest = lengths[batch[0]]  # sorted: the first is the longest
            if len(batch) < batch_size and (max_batch_tokens is None or (len(batch) + 1) * longest <= max_batch_tokens):
                batch.append(i)
                continue
        batches.append([i])
    return batches


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
        quantize: a reduced-precision mode applied after loading: ``"bfloat16"``, ``"int8"`` or ``"auto"``
            (see :mod:`fastbert.quantize`; ``dtype`` then becomes the model's); ``None``: none.

    Settings fastbert cannot reproduce raise ``ValueError`` (naming file, module and setting), a missing folder or
    unreadable file ``OSError``; both before any weights are read.

    Attributes: ``folder`` (what the folder says), ``tokenizer`` (``fastbert.BertTokenizer`` or
    ``fastbert.auto_tokenizer.TokenizersTokenizer``), ``model`` (``fastbert.BertModel``), ``device``,
    ``dtype``, ``max_seq_length`` (settable), ``prompts``, ``default_prompt_name``, ``last_truncated`` (how many
    texts the last ``encode`` call truncated).
    """

    def __init__(self, path: str | os.PathLike | None = None, device: str | torch.device | None = None,
                 dtype: str | torch.dtype | None = None, *, max_seq_length: int | None = None,
                 pooling: str | Sequence[str] | None = None, normalize: bool | None = None,
                 backend: str | None = None, quantize: str | None = None):
        from ..quantize import MODES

        if quantize is not None and quantize not in MODES:
            raise ValueError(f"unknown quantize mode {quantize!r}; expected one of {MODES}")
        self.quantize = quantize
        if path is None:
            from .. import default_model_path

            path = default_model_path()
        self.folder: SentenceFolder = read_folder(path)
        # What worker processes need to build the same encoder (dtype as given: auto picks per device).
        self._options = dict(dtype=dtype, pooling=pooling, normalize=normalize, backend=backend, quantize=quantize)
        self.config = BertConfig.from_pretrained(self.folder.transformer_path)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.backend = backend
        self.pooling = self._pooling(pooling)
        self.head_modules = self._head(normalize)
        self.prompts = dict(self.folder.prompts)
        self.default_prompt_name = self.folder.default_prompt_name
        self.last_truncated = 0
        self.tokenizer = self._load_tokenizer()
        self.max_seq_length = self._default_max_length() if max_seq_length is None else max_seq_length
        self.embedding_dimension = self._check_dimensions()
        self._load_model()

    # ------------------------------------------------------------------ loading
    def _pooling(self, override: str | Sequence[str] | None) -> Pooling:
        if override is None:
            return self.folder.pooling
        modes = (override,) if isinstance(override, str) else tuple(override)
        bad = [m for m in modes if m not in POOLING_MODES]
        if not modes or bad:
            raise ValueError(f"unknown pooling mode(s) {bad or list(modes)}; expected some of {list(POOLING_MODES)}")
        return Pooling(modes, self.folder.pooling.include_prompt)

    def _head(self, normalize: bool | None) -> tuple[Dense | Normalize, ...]:
        head = self.folder.head
        if normalize is False:
            head = tuple(m for m in head if not isinstance(m, Normalize))
        elif normalize is True and not (head and isinstance(head[-1], Normalize)):
            head = (*head, Normalize())
        elif normalize not in (None, True):
            raise TypeError(f"normalize must be None, True or False, got {normalize!r}")
        return head

    def _load_tokenizer(self):
        from ..auto_tokenizer import AutoTokenizer, with_lowercase

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

    def _check_dimensions(self) -> int:
        """The embedding size after pooling and each Dense module; a Dense that does not fit is a ValueError."""
        size = len(self.pooling.modes) * self.config.hidden_size
        for module in self.head_modules:
            if isinstance(module, Dense):
                if module.in_features != size:
                    raise ValueError(f"Dense module {module.path!r} takes {module.in_features} inputs but the "
                                     f"embedding before it has {size} values")
                size = module.out_features
        return size

    def _load_model(self) -> None:
        """Read the weights onto ``self.device`` in ``self.dtype``: the one place that decides how the model is
        stored (a precision or quantization mode changes this method only)."""
        from ..model import AutoModel

        self.model = AutoModel.from_pretrained(self.folder.transformer_path, dtype=self.dtype, device=self.device,
                                               backend=self.backend, add_pooling_layer=False)
        if self.quantize is not None:
            from ..quantize import quantize

            quantize(self.model, self.quantize)
            self.dtype = self.model.embeddings.word.weight.dtype
        self._dense_weights = [_load_dense(m, self.device) if isinstance(m, Dense) else None
                               for m in self.head_modules]

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
        texts = [texts] if single else _text_list(texts)
        if pool is not None:
            if convert_to_tensor or not convert_to_numpy:
                raise ValueError("encode with a pool returns numpy arrays; leave convert_to_numpy/_tensor alone")
            result = pool.encode(texts, batch_size, prompt_name=prompt_name, prompt=prompt,
                                 show_progress_bar=bool(show_progress_bar), normalize_embeddings=normalize_embeddings,
                                 truncate_dim=truncate_dim, max_batch_tokens=max_batch_tokens, truncation=truncation)
            self.last_truncated = pool.last_truncated
            return result[0] if single else result
        _check_encode_options(batch_size, max_batch_tokens, truncate_dim)
        tokens = self._tokenize_with_prompt(texts, self._resolve_prompt(prompt, prompt_name), truncation)
        self.last_truncated = tokens.truncated
        as_tensor = convert_to_tensor or not convert_to_numpy
        out = self._embed_tokens(tokens, batch_size, max_batch_tokens, truncate_dim, normalize_embeddings,
                                 self.device if as_tensor else torch.device("cpu"), bool(show_progress_bar))
        if convert_to_tensor:
            result = out
        elif convert_to_numpy:
            result = out.numpy()
        else:
            result = list(out.unbind(0))
        return result[0] if single else result

    def tokenize_texts(self, texts: Sequence[str], prompt_name: str | None = None, prompt: str | None = None, *,
                       truncation: bool = True) -> TokenizedTexts:
        """The tokens ``encode(texts, prompt_name, prompt, truncation=truncation)`` would embed, without embedding
        them (same prompt rule, same truncation, same :class:`TruncationError`). Changes nothing on ``self``, so it
        may run on another thread than :meth:`encode_tokenized`."""
        texts = _text_list(texts)
        return self._tokenize_with_prompt(texts, self._resolve_prompt(prompt, prompt_name), truncation)

    def encode_tokenized(self, tokens: TokenizedTexts, batch_size: int = 32, *, normalize_embeddings: bool = False,
                         truncate_dim: int | None = None,
                         max_batch_tokens: int | None = DEFAULT_MAX_BATCH_TOKENS) -> np.ndarray:
        """Embeddings of :meth:`tokenize_texts` output: float32 numpy [N, D], in order; exactly what ``encode``
        returns for the same texts and options (``encode`` is ``tokenize_texts`` followed by this)."""
        _check_encode_options(batch_size, max_batch_tokens, truncate_dim)
        return self._embed_tokens(tokens, batch_size, max_batch_tokens, truncate_dim, normalize_embeddings,
                                  torch.device("cpu"), False).numpy()

    def _tokenize_with_prompt(self, texts: list[str], prompt: str | None, truncation: bool) -> TokenizedTexts:
        texts_in = [prompt + t for t in texts] if prompt else texts
        ids, offsets, truncated = self._tokenize(texts_in, truncation)
        prompt_length = self._prompt_length(prompt) if prompt and not self.pooling.include_prompt else 0
        return TokenizedTexts(ids, offsets, truncated, prompt_length)

    def _embed_tokens(self, tokens: TokenizedTexts, batch_size: int, max_batch_tokens: int | None,
                      truncate_dim: int | None, normalize_embeddings: bool, out_device: torch.device,
                      progress: bool) -> torch.Tensor:
        """Embeddings [N, D'] float32 on ``out_device`` (D' = ``truncate_dim`` when given), in order."""
        dim = self.embedding_dimension if truncate_dim is None else min(truncate_dim, self.embedding_dimension)
        out = torch.full((len(tokens), dim), float("nan"), device=out_device)  # a row never written would show
        batches = token_budget_batches(tokens.lengths.tolist(), batch_size, max_batch_tokens)
        from tqdm.auto import tqdm

        with tqdm(total=len(tokens), unit="text", desc="encoding", disable=not progress,
                  file=sys.stderr) as bar, torch.inference_mode():
            for batch in batches:
                emb = self._embed_batch(tokens.ids, tokens.offsets, batch, tokens.prompt_length)  # [b, D] float32
                if truncate_dim is not None:
                    emb = emb[:, :dim]
                if normalize_embeddings:
                    emb = P.normalize(emb)
                out[torch.tensor(batch, device=out_device)] = emb.to(out_device)
                bar.update(len(batch))
        return out

    def start_multi_process_pool(self, target_devices=None, threads_per_worker: int | None = None):
        """Worker processes on ``target_devices`` (``["cuda:0", "cuda:1"]``, a number of CPU workers; ``None``:
        every GPU, else one per core), each with this encoder's folder and settings: pass it to
        ``encode(..., pool=pool)``, stop it with :meth:`stop_multi_process_pool` (sentence-transformers' names).
        A :class:`fastbert.parallel.EncodePool`."""
        from ..parallel import EncodePool

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

    def _tokenize(self, texts: list[str], truncation: bool) -> tuple[np.ndarray, np.ndarray, int]:
        """Token ids of every text, truncated to ``max_seq_length``: (ids [total] int64, offsets [N + 1], how many
        were truncated)."""
        limit = self.max_seq_length
        rows: list[np.ndarray] = []
        long_indices: list[int] = []
        long_lengths: list[int] = []
        for start in range(0, len(texts), _TOKENIZE_CHUNK):
            chunk = texts[start:start + _TOKENIZE_CHUNK]
            full = self.tokenizer(chunk)["input_ids"]
            long = [j for j, row in enumerate(full) if len(row) > limit]
            long_indices += [start + j for j in long]
            long_lengths += [len(full[j]) for j in long]
            if long and truncation:
                cut = self.tokenizer([chunk[j] for j in long], truncation=True, max_length=limit)["input_ids"]
                for j, row in zip(long, cut):
                    full[j] = row
            rows += [np.asarray(row, dtype=np.int64) for row in full]
        if long_indices and not truncation:
            raise TruncationError(long_indices, long_lengths, len(texts), limit)
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum([len(r) for r in rows], out=offsets[1:])
        ids = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        return ids, offsets, len(long_indices)

    def _prompt_length(self, prompt: str) -> int:
        """Tokens of the prompt as sentence-transformers counts them: the prompt tokenized alone (truncated),
        minus a trailing special token."""
        ids = self.tokenizer(prompt, truncation=True, max_length=self.max_seq_length)["input_ids"]
        return len(ids) - (1 if ids and ids[-1] in self.tokenizer.all_special_ids else 0)

    def _embed_batch(self, ids: np.ndarray, offsets: np.ndarray, batch: list[int], prompt_length: int) -> torch.Tensor:
        """The texts ``batch`` -> their embeddings [b, D] float32 on ``self.device``."""
        lengths = [int(offsets[i + 1] - offsets[i]) for i in batch]
        seqlen = max(lengths)
        input_ids = np.full((len(batch), seqlen), self.tokenizer.pad_token_id or 0, dtype=np.int64)
        mask = np.zeros((len(batch), seqlen), dtype=np.int64)
        for row, (i, n) in enumerate(zip(batch, lengths)):
            input_ids[row, :n] = ids[offsets[i]:offsets[i + 1]]
            mask[row, :n] = 1
        input_ids_t = torch.from_numpy(input_ids).to(self.device)
        mask_t = torch.from_numpy(mask).to(self.device)
        hidden = self.model(input_ids_t, mask_t).last_hidden_state.float()  # [b, S, H]
        if prompt_length:
            mask_t = P.prompt_mask(mask_t, prompt_length)
        x = P.pool(hidden, mask_t, self.pooling.modes)  # [b, modes * H]
        for module, weights in zip(self.head_modules, self._dense_weights):
            if isinstance(module, Normalize):
                x = P.normalize(x)
            else:
                x = P.dense(x, weights["linear.weight"], weights.get("linear.bias"), module.activation,
                            weights.get("residual.weight", module.use_residual or None))
        return x


def _check_encode_options(batch_size, max_batch_tokens, truncate_dim) -> None:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if max_batch_tokens is not None and (not isinstance(max_batch_tokens, int) or max_batch_tokens < 1):
        raise ValueError(f"max_batch_tokens must be a positive integer or None, got {max_batch_tokens!r}")
    if truncate_dim is not None and (not isinstance(truncate_dim, int) or truncate_dim < 1):
        raise ValueError(f"truncate_dim must be a positive integer or None, got {truncate_dim!r}")


def _text_list(texts) -> list[str]:
    if isinstance(texts, np.ndarray):
        texts = texts.tolist()
    if isinstance(texts, (bytes, bytearray, dict)) or not isinstance(texts, Iterable):
        raise TypeError(f"texts must be a str or a sequence of str, got {type(texts).__name__}")
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] is a {type(t).__name__}, not a str")
    return texts


def _load_dense(module: Dense, device: torch.device) -> dict[str, torch.Tensor]:
    """The weights of a Dense module folder (``model.safetensors`` or ``pytorch_model.bin``), float32 on
    ``device``, checked against its config: exactly the expected keys and shapes."""
    from ..loading import read_state_dict

    weights = read_state_dict(module.path)
    expected = {"linear.weight": (module.out_features, module.in_features)}
    if module.bias:
        expected["linear.bias"] = (module.out_features,)
    if module.use_residual and module.in_features != module.out_features:
        expected["residual.weight"] = (module.out_features, module.in_features)
    if set(weights) != set(expected):
        raise ValueError(f"Dense module {module.path!r}: weights have keys {sorted(weights)}, its config needs "
                         f"{sorted(expected)}")
    for key, shape in expected.items():
        tensor = weights[key]
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point() or tuple(tensor.shape) != shape:
            raise ValueError(f"Dense module {module.path!r}: {key} must be a float tensor of shape {list(shape)}, "
                             f"got {getattr(tensor, 'dtype', type(tensor).__name__)} "
                             f"{list(getattr(tensor, 'shape', []))}")
    return {k: v.to(device=device, dtype=torch.float32) for k, v in weights.items()}
