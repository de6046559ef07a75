"""Measured accuracy of fastbert against transformers' BertModel (fp32, eager) on the real MiniLM checkpoint.

    python -m benchmarks.parity [--backends torch triton] [--device cpu|cuda] [--out DIR]

For each backend, padding pattern and dtype: max |fastbert - HF fp32| over real tokens and for the pooler, beside
max |HF in that dtype - HF fp32|, the reference's own error in the same dtype. Writes parity.json and parity.md.
Without CUDA the Triton backend runs through the interpreter (set TRITON_INTERPRET=1 before running); bf16 is
then skipped for it, since the interpreter's bf16 ``tl.dot`` is wrong (triton issue #11584).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess

import torch

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "fastbert makes BERT encoders fast.",
    "Hi",
    "A considerably longer sentence, with punctuation; numbers like 3.14159 and 2024, and rarer words such as "
    "antidisestablishmentarianism, so that this row is the longest one in the batch.",
    "Über naïve café owners in São Paulo serve crème brûlée.",
]
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _left_pad(enc):
    out = {k: torch.zeros_like(v) for k, v in enc.items()}
    seqlen = enc["input_ids"].shape[1]
    for row, n in enumerate(enc["attention_mask"].sum(1).tolist()):
        for k, v in enc.items():
            out[k][row, seqlen - n:] = v[row, :n]
    return out


def _err(a, b, where=None):
    d = (a.float() - b.float()).abs()
    return (d[where] if where is not None else d).max().item()


def measure(backends, device, dtypes):
    import transformers

    import fastbert

    path = fastbert.default_model_path()
    tok = transformers.BertTokenizerFast.from_pretrained(path)
    hf = {name: transformers.BertModel.from_pretrained(path, attn_implementation="eager", dtype=dt).to(device).eval()
          for name, dt in DTYPES.items() if name in dtypes or name == "float32"}
    rows = []
    for padding in ("right", "left"):
        enc = dict(tok(SENTENCES, padding=True, return_tensors="pt"))
        if padding == "left":
            enc = _left_pad(enc)
        enc = {k: v.to(device) for k, v in enc.items()}
        valid = enc["attention_mask"].bool()
        with torch.no_grad():
            ref = hf["float32"](**enc)
            for dtype in dtypes:
                ref_low = hf[dtype](**enc)
                for backend in backends:
                    if backend == "triton" and dtype == "bfloat16" and os.environ.get("TRITON_INTERPRET") == "1":
                        continue  # the interpreter's bf16 tl.dot is wrong (triton issue #11584): GPU only
                    model = fastbert.BertModel.from_pretrained(path, dtype=dtype, device=device, backend=backend)
                    out = model(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
                    rows.append(dict(
                        backend=backend, padding=padding, dtype=dtype,
                        hidden_err=_err(out.last_hidden_state, ref.last_hidden_state, valid),
                        pooler_err=_err(out.pooler_output, ref.pooler_output),
                        hf_same_dtype_hidden_err=_err(ref_low.last_hidden_state, ref.last_hidden_state, valid),
                        hf_same_dtype_pooler_err=_err(ref_low.pooler_output, ref.pooler_output),
                        max_abs_reference=ref.last_hidden_state[valid].abs().max().item(),
                    ))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["torch", "triton"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES))
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU ({platform.processor() or platform.machine()})"
    slug = "cpu" if not args.device.startswith("cuda") else device_name.lower().replace(" ", "-")
    out_dir = args.out or os.path.join(os.path.dirname(__file__), "results", slug)
    os.makedirs(out_dir, exist_ok=True)
    rows = measure(args.backends, args.device, args.dtypes)
    import transformers
    import triton

    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    meta = dict(device=device_name, torch=torch.__version__, triton=triton.__version__,
                transformers=transformers.__version__, commit=commit,
                triton_interpret=os.environ.get("TRITON_INTERPRET", "0"), model="all-MiniLM-L6-v2")
    with open(os.path.join(out_dir, "parity.json"), "w") as f:
        json.dump(dict(meta=meta, rows=rows), f, indent=2)
    lines = [f"# fastbert vs transformers BertModel (fp32 eager reference), all-MiniLM-L6-v2",
             "", ", ".join(f"{k}: {v}" for k, v in meta.items()), "",
             "| backend | padding | dtype | max err hidden | HF same-dtype err | ratio | max err pooler | HF same-dtype pooler err |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        ratio = r["hidden_err"] / r["hf_same_dtype_hidden_err"] if r["hf_same_dtype_hidden_err"] else float("nan")
        lines.append(f"| {r['backend']} | {r['padding']} | {r['dtype']} | {r['hidden_err']:.3g} | "
                     f"{r['hf_same_dtype_hidden_err']:.3g} | {ratio:.2f} | {r['pooler_err']:.3g} | "
                     f"{r['hf_same_dtype_pooler_err']:.3g} |")
    with open(os.path.join(out_dir, "parity.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
