"""Helpers shared by the tests (imported as ``from utils import ...``; pytest puts tests/ on sys.path)."""
import torch


def parity_bound(reference: torch.Tensor) -> float:
    """The fp32 parity bound: 2e-5 x max(1, max |reference|)."""
    return 2e-5 * max(1.0, reference.abs().max().item())


def max_err(a: torch.Tensor, b: torch.Tensor, where: torch.Tensor | None = None) -> float:
    """Max |a - b| in float32, over the positions where ``where`` (a [B, S] mask) is true."""
    d = (a.float() - b.float()).abs()
    if where is not None:
        d = d[where.bool()]
    return d.max().item()


def left_pad(enc: dict, pad_id: int = 0) -> dict:
    """Turn a right-padded HF encoding (input_ids, token_type_ids, attention_mask) into a left-padded one."""
    out = {k: torch.zeros_like(v) for k, v in enc.items()}
    out["input_ids"].fill_(pad_id)
    lengths = enc["attention_mask"].sum(1).tolist()
    seqlen = enc["input_ids"].shape[1]
    for row, n in enumerate(lengths):
        for k, v in enc.items():
            out[k][row, seqlen - n:] = v[row, :n]
    return out


def tiny_hf_config(**overrides):
    """A small random BERT config for quick tests."""
    from transformers import BertConfig

    kwargs = dict(vocab_size=211, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=128, max_position_embeddings=64, type_vocab_size=2,
                  hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    kwargs.update(overrides)
    return BertConfig(**kwargs)


def float_outputs(out):
    """The float tensors of a HF output, by name (hidden states flattened)."""
    items = {}
    for k, v in out.items():
        if isinstance(v, torch.Tensor) and v.is_floating_point():
            items[k] = v
        elif isinstance(v, tuple):
            items.update({f"{k}.{i}": t for i, t in enumerate(v)})
    return items


def patterned_batch(seqlen: int, pattern: str, vocab: int, pad_id: int):
    """input_ids/attention_mask ``[3, seqlen]``: row 0 whole, row 1 per ``pattern`` (``"right"``, ``"left"`` or
    ``"holes"`` padding), row 2 of length 1 (right padded); padding holds ``pad_id`` (holes are masked real tokens:
    their ids stay)."""
    ids = torch.randint(3, vocab, (3, seqlen))
    mask = torch.ones(3, seqlen, dtype=torch.long)
    mask[2, 1:] = 0
    if pattern == "right":
        mask[1, torch.randint(1, seqlen, ()) if seqlen > 1 else 1:] = 0
    elif pattern == "left" and seqlen > 1:
        mask[1, :torch.randint(1, seqlen, ())] = 0
    elif pattern == "holes" and seqlen > 2:
        mask[1, torch.randperm(seqlen - 1)[:max(1, seqlen // 4)] + 1] = 0
    padding = mask == 0
    if pattern == "holes":
        padding[1] = False
    ids[padding] = pad_id
    return ids, mask
