// UTF-8 decoding and per-code-point lookups into the generated tables (csrc/unicode_tables.h).
#pragma once
#include <cstddef>
#include <cstdint>

#include "unicode_tables.h"

// The per-character steps (pre-tokenizer push, WordPiece) are called from more than one place; inlining them
// into the normalizer's loop is worth ~10% of the whole tokenizer, so it is not left to the compiler's judgement.
#if defined(__GNUC__) || defined(__clang__)
#define FASTBERT_ALWAYS_INLINE inline __attribute__((always_inline))
#define FASTBERT_INLINE_LAMBDA __attribute__((always_inline))  // after a lambda's parameter list
#else
#define FASTBERT_ALWAYS_INLINE inline
#define FASTBERT_INLINE_LAMBDA
#endif

namespace fastbert::unicode {

namespace t = fastbert::unicode_tables;
using t::CharRecord;

inline const CharRecord& record(uint32_t cp) {
    const uint32_t block = t::kStage1[cp >> t::kShift];
    return t::kRecords[t::kStage2[block * t::kBlock + (cp & (t::kBlock - 1))]];
}

// Length in bytes of the UTF-8 sequence that starts with lead byte `b` (input is valid UTF-8).
inline size_t utf8_length(unsigned char b) {
    if (b < 0x80) return 1;
    if (b < 0xE0) return 2;
    if (b < 0xF0) return 3;
    return 4;
}

// Decodes the character of `n` bytes at `p` (valid UTF-8, n == utf8_length(p[0])).
inline uint32_t decode(const unsigned char* p, size_t n) {
    switch (n) {
        case 1: return p[0];
        case 2: return (uint32_t(p[0] & 0x1F) << 6) | (p[1] & 0x3F);
        case 3: return (uint32_t(p[0] & 0x0F) << 12) | (uint32_t(p[1] & 0x3F) << 6) | (p[2] & 0x3F);
        default:
            return (uint32_t(p[0] & 0x07) << 18) | (uint32_t(p[1] & 0x3F) << 12) | (uint32_t(p[2] & 0x3F) << 6) |
                   (p[3] & 0x3F);
    }
}

// Writes code point `cp` as UTF-8 into `out` (4 bytes of room); returns the byte count.
inline size_t encode(uint32_t cp, char* out) {
    if (cp < 0x80) {
        out[0] = static_cast<char>(cp);
        return 1;
    }
    if (cp < 0x800) {
        out[0] = static_cast<char>(0xC0 | (cp >> 6));
        out[1] = static_cast<char>(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = static_cast<char>(0xE0 | (cp >> 12));
        out[1] = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out[2] = static_cast<char>(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = static_cast<char>(0xF0 | (cp >> 18));
    out[1] = static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out[2] = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out[3] = static_cast<char>(0x80 | (cp & 0x3F));
    return 4;
}

// Number of characters in a valid UTF-8 string.
inline size_t count_chars(const char* s, size_t n) {
    size_t chars = 0;
    for (size_t i = 0; i < n; ++i) chars += (static_cast<unsigned char>(s[i]) & 0xC0) != 0x80;
    return chars;
}

}  // namespace fastbert::unicode
