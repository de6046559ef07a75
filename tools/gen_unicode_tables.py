"""Generate ``csrc/unicode_tables.h``: the per-code-point data of the BERT normalizer and pre-tokenizer.

Run from the repository root:  ``python tools/gen_unicode_tables.py``  (takes about a minute).

Sources
-------
* Python's ``unicodedata`` (the Unicode version of the running interpreter, 14.0 for Python 3.11) gives:
  - ``remove``  : what BERT's clean-text step drops: NUL, U+FFFD and the "other" categories Cc, Cf, Co
                  (not Cn: unassigned code points are kept), except TAB, LF, CR;
  - ``space``   : the White_Space property (``str.isspace`` minus U+001C..U+001F, which are Bidi separators but
                  not White_Space);
  - ``punct``   : general category P* or ASCII punctuation;
  - ``cjk``     : BERT's "Chinese character" blocks (the fixed ranges below are BERT's definition, not Unicode data);
  - ``word``    : a word character as in the regex ``\w`` that ``tokenizers`` uses for ``single_word`` added tokens
                  (Alphabetic, marks, decimal digits, connector punctuation, Join_Control); Alphabetic and
                  Join_Control are Unicode properties ``unicodedata`` lacks, so they come from the ``regex`` package;
  - ``mn``/``ccc``/``nfd``: nonspacing marks, canonical combining classes and canonical decompositions, for the
                  canonical reordering of combining marks that NFD does across characters;
  - mappings    : ``strip`` = NFD with nonspacing marks (Mn) removed, ``lower`` = full lowercase mapping of one
                  character (SpecialCasing included, no context: capital sigma always maps to small sigma),
                  ``lower_strip`` = ``lower`` applied to ``strip``.
* Hugging Face's Rust backend mixes Unicode versions: General_Category comes from the ``unicode_categories``
  crate (frozen at Unicode 8.0), lowercase and White_Space from Rust's ``std`` (newer than our Python), NFD from
  ``unicode-normalization-alignments``. To agree with it on every code point, when the ``tokenizers`` package is
  importable this script asks its ``BertNormalizer`` / ``BertPreTokenizer`` about every code point and, where the
  answer differs from ``unicodedata``, uses the answer of the backend. The overridden code points are listed, with
  their reason, in the header comment of the output, so every deviation from ``unicodedata`` is visible.
  ``--no-hf`` writes pure ``unicodedata`` tables.

Output layout (a two-stage table)
---------------------------------
``kStage1[cp >> SHIFT]`` selects a block, ``kStage2[block * BLOCK + (cp & (BLOCK-1))]`` is the index of a
``CharRecord`` {flags, lower, strip, lower_strip}. A mapping is ``offset << 8 | length`` into ``kPool`` (UTF-8),
or ``kIdentity`` when the character maps to itself.
"""
from __future__ import annotations

import argparse
import os
import sys
import unicodedata

SHIFT = 7
BLOCK = 1 << SHIFT
MAX_CP = 0x110000
IDENTITY = 0xFFFFFFFF

FLAG_REMOVE = 1  # dropped by clean_text
FLAG_SPACE = 2   # White_Space: a word boundary (and replaced by ' ' by clean_text)
FLAG_PUNCT = 4   # isolated as a one-character word by the pre-tokenizer
FLAG_CJK = 8     # padded with spaces by tokenize_chinese_chars
FLAG_MN = 16     # nonspacing mark: removed by strip_accents (after NFD)
FLAG_REORDER = 32  # its NFD holds a non-starter (ccc > 0): needs canonical reordering with its neighbours
FLAG_WORD = 64   # a word character (regex \w): single_word added tokens must not touch one

# BERT's definition of a "Chinese character" (CJK Unified Ideographs blocks and extensions, compatibility blocks).
CJK_RANGES = [
    (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F), (0x2B920, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F),
]
ASCII_PUNCT = set(range(0x21, 0x30)) | set(range(0x3A, 0x41)) | set(range(0x5B, 0x61)) | set(range(0x7B, 0x7F))


_WORD = None


def is_word_char(ch: str) -> bool:
    """Rust regex's Unicode ``\\w``: Alphabetic, Mark, Decimal_Number, Connector_Punctuation, Join_Control."""
    global _WORD
    if _WORD is None:
        import regex
        _WORD = regex.compile(r"[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}]")
    return _WORD.match(ch) is not None


def code_points():
    return [c for c in range(MAX_CP) if not 0xD800 <= c <= 0xDFFF]


def ucd_properties(c: int) -> tuple:
    """(flags, lower, strip, lower_strip, nfd, ccc) of code point ``c`` from ``unicodedata``; ``ccc`` (the
    canonical combining class) is kept for characters that are their own NFD (the only ones reordered)."""
    ch = chr(c)
    cat = unicodedata.category(ch)
    flags = 0
    if c in (0, 0xFFFD) or (cat in ("Cc", "Cf", "Co") and ch not in "\t\n\r"):
        flags |= FLAG_REMOVE
    if ch.isspace() and not 0x1C <= c <= 0x1F:
        flags |= FLAG_SPACE
    if cat.startswith("P") or c in ASCII_PUNCT:
        flags |= FLAG_PUNCT
    if any(lo <= c <= hi for lo, hi in CJK_RANGES):
        flags |= FLAG_CJK
    if is_word_char(ch):
        flags |= FLAG_WORD
    strip = "".join(x for x in unicodedata.normalize("NFD", ch) if unicodedata.category(x) != "Mn")
    lower = ch.lower()
    lower_strip = strip.lower()
    nfd = unicodedata.normalize("NFD", ch)
    if cat == "Mn" and nfd == ch:
        flags |= FLAG_MN
    ccc = unicodedata.combining(ch) if nfd == ch else 0
    if any(unicodedata.combining(x) for x in nfd):
        flags |= FLAG_REORDER
    return flags, lower, strip, lower_strip, nfd, ccc


def hf_properties(cps):
    """The same properties as answered by the installed ``tokenizers`` backend, or None if it is missing."""
    try:
        from tokenizers import AddedToken, Tokenizer, models, normalizers, pre_tokenizers
    except ImportError:
        return None
    # \w as the added-vocabulary matcher sees it: a single_word token right after c is kept iff c is not \w.
    probe = Tokenizer(models.WordPiece({"[UNK]": 0}, unk_token="[UNK]"))
    marker = "\x00\x00"
    probe.add_tokens([AddedToken(marker, single_word=True, normalized=False)])
    marker_id = probe.token_to_id(marker)
    not_word = {c for c, enc in zip(cps, probe.encode_batch([chr(c) + marker for c in cps], add_special_tokens=False))
                if marker_id in enc.ids}

    def norm(clean, cjk, strip, lower):
        return normalizers.BertNormalizer(clean_text=clean, handle_chinese_chars=cjk, strip_accents=strip,
                                          lowercase=lower).normalize_str

    clean = norm(True, False, False, False)
    chinese = norm(False, True, False, False)
    strip = norm(False, False, True, False)
    lower = norm(False, False, False, True)
    lower_strip = norm(False, False, True, True)
    pre = pre_tokenizers.BertPreTokenizer().pre_tokenize_str
    nfd = normalizers.NFD().normalize_str
    out = {}
    for c in cps:
        ch = chr(c)
        flags = 0
        if clean(ch) == "":
            flags |= FLAG_REMOVE
        pieces = [p for p, _ in pre("a" + ch + "b")]
        if pieces == ["a", "b"]:
            flags |= FLAG_SPACE
        elif len(pieces) == 3:
            flags |= FLAG_PUNCT
        if chinese(ch) == " " + ch + " ":
            flags |= FLAG_CJK
        if c not in not_word:
            flags |= FLAG_WORD
        decomposed = nfd(ch)
        stripped = strip(ch)
        if decomposed == ch and stripped == "":
            flags |= FLAG_MN
        # Canonical combining class: only whether the backend reorders c is observable; its value is taken from
        # unicodedata (230, the most common class, for marks unicodedata does not know).
        ccc = 0
        if decomposed == ch:
            after_low = nfd(ch + "\u0334") == "\u0334" + ch        # ccc(c) > 1
            before_high = nfd("\u0301" + ch) == ch + "\u0301"      # 0 < ccc(c) < 230
            if after_low or before_high:
                ccc = unicodedata.combining(ch) or 230
        out[c] = (flags, lower(ch), stripped, lower_strip(ch), decomposed, ccc)
    ccc_of = {c: v[5] for c, v in out.items()}
    for c, v in out.items():
        if any(ccc_of.get(ord(x), 0) for x in v[4]):
            out[c] = (v[0] | FLAG_REORDER,) + v[1:]
    return out


FLAG_NAMES = {FLAG_REMOVE: "remove", FLAG_SPACE: "space", FLAG_PUNCT: "punct", FLAG_CJK: "cjk", FLAG_MN: "mn",
              FLAG_REORDER: "reorder", FLAG_WORD: "word"}
MAP_NAMES = ("lower", "strip", "lower_strip", "nfd", "ccc")


def build(use_hf: bool):
    cps = code_points()
    props = {c: ucd_properties(c) for c in cps}
    overrides: dict[str, list[int]] = {}
    hf = hf_properties(cps) if use_hf else None
    if use_hf and hf is None:
        print("warning: tokenizers is not importable; writing pure unicodedata tables", file=sys.stderr)
    if hf is not None:
        for c in cps:
            mine, theirs = props[c], hf[c]
            if mine == theirs:
                continue
            for bit, name in FLAG_NAMES.items():
                if (mine[0] ^ theirs[0]) & bit:
                    overrides.setdefault(name, []).append(c)
            for i, name in enumerate(MAP_NAMES, start=1):
                if mine[i] != theirs[i]:
                    overrides.setdefault(name, []).append(c)
            props[c] = theirs

    pool = bytearray()
    pool_index: dict[bytes, int] = {}

    def encode_mapping(c: int, s: str) -> int:
        if s == chr(c):
            return IDENTITY
        b = s.encode("utf-8")
        assert len(b) < 256
        if b not in pool_index:
            pool_index[b] = len(pool)
            pool.extend(b)
        return pool_index[b] << 8 | len(b)

    records: dict[tuple, int] = {(0, IDENTITY, IDENTITY, IDENTITY, IDENTITY, 0): 0}
    per_cp = [0] * MAX_CP
    for c in cps:
        flags, lower, strip, lower_strip, nfd, ccc = props[c]
        rec = (flags, encode_mapping(c, lower), encode_mapping(c, strip), encode_mapping(c, lower_strip),
               encode_mapping(c, nfd), ccc)
        per_cp[c] = records.setdefault(rec, len(records))
    assert len(records) < 1 << 16

    blocks: dict[tuple, int] = {}
    stage1 = []
    for start in range(0, MAX_CP, BLOCK):
        blk = tuple(per_cp[start:start + BLOCK])
        stage1.append(blocks.setdefault(blk, len(blocks)))
    stage2 = [v for blk in sorted(blocks, key=blocks.get) for v in blk]
    return stage1, stage2, sorted(records, key=records.get), bytes(pool), overrides


def fmt_array(values, per_line=24):
    lines = []
    for i in range(0, len(values), per_line):
        lines.append("    " + ", ".join(str(v) for v in values[i:i + per_line]) + ",")
    return "\n".join(lines)


def fmt_ranges(cps):
    """Compress a sorted code point list into 'U+XXXX..U+YYYY' ranges for the header comment."""
    out, i = [], 0
    while i < len(cps):
        j = i
        while j + 1 < len(cps) and cps[j + 1] == cps[j] + 1:
            j += 1
        out.append(f"U+{cps[i]:04X}" if i == j else f"U+{cps[i]:04X}..U+{cps[j]:04X}")
        i = j + 1
    return out


def render(stage1, stage2, records, pool, overrides, hf_version):
    source = f"Python {sys.version.split()[0]} unicodedata (Unicode {unicodedata.unidata_version})"
    lines = [
        "// Generated by tools/gen_unicode_tables.py -- do not edit by hand.",
        f"// Source: {source}" + (f", cross-checked against tokenizers {hf_version}." if hf_version else "."),
    ]
    if overrides:
        lines.append("// Code points where the Hugging Face backend (older/newer Unicode data) differs from unicodedata;")
        lines.append("// the table follows the backend for them:")
        for name in sorted(overrides):
            cps = sorted(set(overrides[name]))
            ranges = fmt_ranges(cps)
            lines.append(f"//   {name} ({len(cps)} code points):")
            for i in range(0, len(ranges), 8):
                lines.append("//     " + " ".join(ranges[i:i + 8]))
    lines += [
        "#pragma once",
        "#include <cstdint>",
        "",
        "namespace fastbert::unicode_tables {",
        "",
        f"constexpr int kShift = {SHIFT};",
        f"constexpr uint32_t kBlock = {BLOCK};",
        f"constexpr uint32_t kIdentity = 0x{IDENTITY:X}u;  // the character maps to itself",
        f"constexpr uint8_t kFlagRemove = {FLAG_REMOVE};  // dropped by clean_text (NUL, U+FFFD, Cc/Cf/Co)",
        f"constexpr uint8_t kFlagSpace = {FLAG_SPACE};   // White_Space",
        f"constexpr uint8_t kFlagPunct = {FLAG_PUNCT};   // punctuation (P* or ASCII punctuation)",
        f"constexpr uint8_t kFlagCjk = {FLAG_CJK};     // BERT Chinese character",
        f"constexpr uint8_t kFlagMn = {FLAG_MN};     // nonspacing mark (dropped by strip_accents)",
        f"constexpr uint8_t kFlagReorder = {FLAG_REORDER};  // NFD holds a non-starter: canonical reordering needed",
        f"constexpr uint8_t kFlagWord = {FLAG_WORD};   // word character (regex \\w), for single_word added tokens",
        "",
        "// A mapping is (offset into kPool) << 8 | byte length, or kIdentity.",
        "struct CharRecord {",
        "    uint8_t flags;",
        "    uint32_t lower;        // lowercase",
        "    uint32_t strip;        // NFD without Mn",
        "    uint32_t lower_strip;  // lowercase of strip",
        "    uint32_t nfd;          // canonical decomposition",
        "    uint8_t ccc;           // canonical combining class (of characters that are their own NFD)",
        "};",
        "",
        f"inline constexpr uint16_t kStage1[{len(stage1)}] = {{",
        fmt_array(stage1),
        "};",
        "",
        f"inline constexpr uint16_t kStage2[{len(stage2)}] = {{",
        fmt_array(stage2),
        "};",
        "",
        f"inline constexpr CharRecord kRecords[{len(records)}] = {{",
    ]
    for flags, lower, strip, lower_strip, nfd, ccc in records:
        lines.append(f"    {{{flags}, 0x{lower:X}u, 0x{strip:X}u, 0x{lower_strip:X}u, 0x{nfd:X}u, {ccc}}},")
    lines += [
        "};",
        "",
        f"inline constexpr unsigned char kPool[{max(len(pool), 1)}] = {{",
        fmt_array(list(pool) or [0], per_line=32),
        "};",
        "",
        "}  // namespace fastbert::unicode_tables",
        "",
    ]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "csrc", "unicode_tables.h"))
    parser.add_argument("--no-hf", action="store_true", help="do not cross-check against the tokenizers backend")
    args = parser.parse_args()
    stage1, stage2, records, pool, overrides = build(use_hf=not args.no_hf)
    hf_version = None
    if not args.no_hf:
        try:
            import tokenizers
            hf_version = tokenizers.__version__
        except ImportError:
            pass
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(render(stage1, stage2, records, pool, overrides, hf_version))
    n_over = {k: len(set(v)) for k, v in overrides.items()}
    print(f"wrote {args.out}: {len(stage1)} blocks, {len(stage2)} stage-2 entries, {len(records)} records, "
          f"{len(pool)} pool bytes; overrides {n_over}")


if __name__ == "__main__":
    main()
