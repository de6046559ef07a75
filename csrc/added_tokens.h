// Added tokens ([CLS], [MASK], user tokens): found in the text and kept whole, as Hugging Face's AddedVocabulary
// does. Tokens with normalized=false are matched in the raw text, the others in the normalized text of what is
// left (their pattern is then their normalized content). Matches are leftmost-longest and never overlap; the
// flags then act on each match in order:
//   single_word: the match is dropped when a word character (regex \w) touches it on either side;
//   lstrip / rstrip: the whitespace before / after the match becomes part of the token;
//   special: the token is dropped from decoding with skip_special_tokens, and not matched at all when the
//            caller asks to split special tokens (split_special_tokens).
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "unicode.h"

namespace fastbert {

struct AddedTokenSpec {
    std::string content;
    int32_t id = -1;
    bool single_word = false;
    bool lstrip = false;
    bool rstrip = false;
    bool normalized = false;
    bool special = false;
};

class AddedTokens {
  public:
    struct Pattern {
        std::string text;  // what is searched for: the content, or the normalized content
        int32_t id;
        bool single_word, lstrip, rstrip, special;
    };

    AddedTokens() = default;
    explicit AddedTokens(std::vector<Pattern> patterns) : patterns_(std::move(patterns)) {
        patterns_.erase(std::remove_if(patterns_.begin(), patterns_.end(),
                                       [](const Pattern& p) { return p.text.empty(); }),
                        patterns_.end());
        // Longest first, so the first pattern that matches at a position is the longest one.
        std::stable_sort(patterns_.begin(), patterns_.end(),
                         [](const Pattern& a, const Pattern& b) { return a.text.size() > b.text.size(); });
        for (const auto& p : patterns_) {
            const auto first = static_cast<unsigned char>(p.text[0]);
            is_first_[first] = true;
            if (single_first_ < 0) single_first_ = first;
            else if (single_first_ != first) single_first_ = 256;
        }
    }

    bool empty() const { return patterns_.empty(); }

    // Splits `text` into plain segments and added tokens, in order: on_text(std::string_view segment) and
    // on_token(int32_t id, size_t begin, size_t end, size_t content_begin, size_t content_end) with the token's
    // byte range in `text` (whitespace taken by lstrip/rstrip included; it may start before the end of the
    // previous token when that token took the whitespace this one starts with) and the range of the match itself.
    // Segments may be empty. With skip_special, special tokens are not matched.
    template <class OnText, class OnToken>
    void split(std::string_view text, bool skip_special, OnText&& on_text, OnToken&& on_token) const {
        if (patterns_.empty()) {
            on_text(text);
            return;
        }
        const char* data = text.data();
        const size_t n = text.size();
        size_t segment = 0;  // start of the text not yet handed out
        size_t pos = 0;      // where the search for the next match starts
        while (pos < n) {
            const Pattern* match = nullptr;
            size_t at = pos;
            for (; at < n; ++at) {
                if (single_first_ >= 0 && single_first_ < 256) {
                    const void* hit = std::memchr(data + at, single_first_, n - at);
                    if (!hit) {
                        at = n;
                        break;
                    }
                    at = static_cast<size_t>(static_cast<const char*>(hit) - data);
                } else if (!is_first_[static_cast<unsigned char>(data[at])]) {
                    continue;
                }
                match = longest_at(data + at, n - at);
                if (match) break;
            }
            if (!match) break;
            size_t begin = at, end = at + match->text.size();
            const size_t content_begin = begin, content_end = end;
            pos = end;  // as Hugging Face: the next search starts after this match, kept or not
            if (skip_special && match->special) continue;
            if (match->single_word && (touches_word_before(data, begin) || touches_word_after(data, end, n)))
                continue;
            if (match->lstrip) begin = std::max(whitespace_before(data, begin), segment);
            if (match->rstrip) end = whitespace_after(data, end, n);
            // A match may start inside whitespace an rstrip token before it took: as in Hugging Face, both keep it.
            on_text(std::string_view(data + segment, begin > segment ? begin - segment : 0));
            on_token(match->id, begin, end, content_begin, content_end);
            segment = end;
        }
        on_text(std::string_view(data + segment, n - segment));
    }

  private:
    const Pattern* longest_at(const char* p, size_t left) const {
        for (const auto& t : patterns_)
            if (t.text[0] == *p && left >= t.text.size() && std::memcmp(p, t.text.data(), t.text.size()) == 0)
                return &t;
        return nullptr;
    }

    static uint8_t flags_at(const char* p) {
        const auto* u = reinterpret_cast<const unsigned char*>(p);
        return unicode::record(unicode::decode(u, unicode::utf8_length(*u))).flags;
    }
    // Start of the character that ends right before byte `i` (i > 0).
    static size_t previous_char(const char* data, size_t i) {
        do {
            --i;
        } while (i > 0 && (static_cast<unsigned char>(data[i]) & 0xC0) == 0x80);
        return i;
    }
    static bool touches_word_before(const char* data, size_t begin) {
        return begin > 0 && (flags_at(data + previous_char(data, begin)) & unicode_tables::kFlagWord);
    }
    static bool touches_word_after(const char* data, size_t end, size_t n) {
        return end < n && (flags_at(data + end) & unicode_tables::kFlagWord);
    }
    // Start of the run of White_Space characters that ends at `begin`.
    static size_t whitespace_before(const char* data, size_t begin) {
        while (begin > 0) {
            const size_t prev = previous_char(data, begin);
            if (!(flags_at(data + prev) & unicode_tables::kFlagSpace)) break;
            begin = prev;
        }
        return begin;
    }
    // End of the run of White_Space characters that starts at `end`.
    static size_t whitespace_after(const char* data, size_t end, size_t n) {
        while (end < n && (flags_at(data + end) & unicode_tables::kFlagSpace))
            end += unicode::utf8_length(static_cast<unsigned char>(data[end]));
        return end;
    }

    std::vector<Pattern> patterns_;
    bool is_first_[256] = {};
    int single_first_ = -1;  // the one first byte shared by all patterns, 256 if several, -1 if none
};

}  // namespace fastbert
