// BERT pre-tokenizer: splits normalized text on White_Space and isolates every punctuation character.
//
// Fed one normalized character at a time (see BertNormalizer::run); a finished word is handed to a callback
// with, for each of its bytes, the index of the input character it came from.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "unicode.h"

namespace fastbert {

class BertPreTokenizer {
  public:
    enum Kind : uint8_t { kWord = 0, kSpace = 1, kPunct = 2 };

    BertPreTokenizer() : ascii_kind_(ascii_kinds()) {
        word_.reserve(256);
        source_.reserve(256);
    }

    static Kind kind(const char* s, size_t n) {
        using namespace unicode_tables;
        const uint8_t flags = unicode::record(unicode::decode(reinterpret_cast<const unsigned char*>(s), n)).flags;
        return (flags & kFlagSpace) ? kSpace : (flags & kFlagPunct) ? kPunct : kWord;
    }

    // Adds one normalized character of `n` bytes that came from input character `source`.
    template <class OnWord>
    FASTBERT_ALWAYS_INLINE void push(const char* s, size_t n, int32_t source, OnWord&& on_word) {
        const Kind k = n == 1 ? static_cast<Kind>(ascii_kind_[static_cast<unsigned char>(*s)]) : kind(s, n);
        if (k == kWord) {
            word_.append(s, n);
            source_.insert(source_.end(), n, source);
            return;
        }
        finish(on_word);
        if (k == kPunct) {
            word_.assign(s, n);
            source_.assign(n, source);
            finish(on_word);
        }
    }

    // Ends the current word, if any: on_word(std::string_view word, const int32_t* source_per_byte).
    template <class OnWord>
    void finish(OnWord&& on_word) {
        if (word_.empty()) return;
        on_word(std::string_view(word_), source_.data());
        word_.clear();
        source_.clear();
    }

  private:
    // Kind of each ASCII character, computed once (a tokenizer call makes a pre-tokenizer per work item).
    static const uint8_t* ascii_kinds() {
        static const auto table = [] {
            std::array<uint8_t, 128> t{};
            for (uint32_t c = 0; c < 128; ++c) {
                const char ch = static_cast<char>(c);
                t[c] = kind(&ch, 1);
            }
            return t;
        }();
        return table.data();
    }

    const uint8_t* ascii_kind_;
    std::string word_;
    std::vector<int32_t> source_;
};

}  // namespace fastbert
