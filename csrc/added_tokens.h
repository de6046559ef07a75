// Special (added) tokens such as [CLS] or [MASK]: found verbatim in the raw text, before normalization, and
// kept whole. Matching is leftmost-longest, as Hugging Face's AddedVocabulary does for non-normalized tokens.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "unicode.h"

namespace fastbert {

class AddedTokens {
  public:
    struct Token {
        std::string content;
        int32_t id;
        int32_t chars;  // length in characters
    };

    explicit AddedTokens(const std::vector<std::pair<std::string, int32_t>>& tokens) {
        for (const auto& [content, id] : tokens) {
            if (content.empty()) continue;
            tokens_.push_back(Token{content, id, static_cast<int32_t>(unicode::count_chars(content.data(), content.size()))});
            is_first_[static_cast<unsigned char>(content[0])] = true;
        }
        // Longest first, so the first token that matches at a position is the longest one.
        std::stable_sort(tokens_.begin(), tokens_.end(),
                         [](const Token& a, const Token& b) { return a.content.size() > b.content.size(); });
        for (const auto& t : tokens_) {
            if (single_first_ < 0) single_first_ = static_cast<unsigned char>(t.content[0]);
            else if (single_first_ != static_cast<unsigned char>(t.content[0])) single_first_ = 256;
        }
    }

    bool empty() const { return tokens_.empty(); }

    // Splits `text` into plain segments and added tokens, in order: on_text(std::string_view segment) and
    // on_token(const Token&). Segments may be empty.
    template <class OnText, class OnToken>
    void split(std::string_view text, OnText&& on_text, OnToken&& on_token) const {
        if (tokens_.empty()) {
            on_text(text);
            return;
        }
        const char* begin = text.data();
        const char* end = begin + text.size();
        const char* segment = begin;
        const char* p = begin;
        while (p < end) {
            if (single_first_ >= 0 && single_first_ < 256) {
                p = static_cast<const char*>(std::memchr(p, single_first_, static_cast<size_t>(end - p)));
                if (!p) break;
            } else if (!is_first_[static_cast<unsigned char>(*p)]) {
                ++p;
                continue;
            }
            const Token* match = nullptr;
            for (const auto& t : tokens_) {
                if (t.content[0] == *p && static_cast<size_t>(end - p) >= t.content.size() &&
                    std::memcmp(p, t.content.data(), t.content.size()) == 0) {
                    match = &t;
                    break;
                }
            }
            if (!match) {
                ++p;
                continue;
            }
            on_text(std::string_view(segment, static_cast<size_t>(p - segment)));
            on_token(*match);
            p += match->content.size();
            segment = p;
        }
        on_text(std::string_view(segment, static_cast<size_t>(end - segment)));
    }

  private:
    std::vector<Token> tokens_;
    bool is_first_[256] = {};
    int single_first_ = -1;  // the one first byte shared by all tokens, 256 if several, -1 if none
};

}  // namespace fastbert
