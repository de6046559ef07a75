// WordPiece: greedy longest-match-first split of one word into vocabulary pieces.
//
// The vocabulary is a byte trie whose edges live in one open-addressing hash table keyed by (node, byte), so
// matching a word walks it once per byte and never builds a candidate string. Continuation pieces ("##ing")
// are matched by starting the walk at the node of the prefix "##". As in Hugging Face's WordPiece, a word
// longer than `max_input_chars_per_word` characters, or with any part that matches nothing, becomes [UNK].
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "unicode.h"

namespace fastbert {

class WordPiece {
  public:
    // `vocab`: (token, id) pairs; a token listed twice keeps its last id.
    WordPiece(const std::vector<std::pair<std::string, int32_t>>& vocab, int32_t unk_id,
              std::string continuing_subword_prefix = "##", size_t max_input_chars_per_word = 100);

    // Id of `token`, or -1.
    int32_t token_to_id(std::string_view token) const;

    // Splits `word` (normalized UTF-8); source[i] is the input character of byte i. Calls
    // emit(int32_t id, int32_t start_char, int32_t end_char) for each piece, end exclusive.
    template <class Emit>
    FASTBERT_ALWAYS_INLINE void tokenize(std::string_view word, const int32_t* source, Emit&& emit) const {
        const size_t n = word.size();
        const auto* w = reinterpret_cast<const unsigned char*>(word.data());
        if (n > max_chars_ && unicode::count_chars(word.data(), n) > max_chars_) {
            emit(unk_id_, source[0], source[n - 1] + 1);
            return;
        }
        // A word of at most max_chars_ characters has at most that many pieces.
        Piece pieces_small[64];
        std::vector<Piece> pieces_large;
        Piece* pieces = pieces_small;
        if (n > 64) {
            pieces_large.resize(n);
            pieces = pieces_large.data();
        }
        size_t count = 0;
        for (size_t pos = 0; pos < n;) {
            uint32_t node = pos == 0 ? kRoot : continuation_root_;
            int32_t best_id = -1;
            size_t best_end = pos;
            if (node != kNone) {
                for (size_t i = pos; i < n; ++i) {
                    node = child(node, w[i]);
                    if (node == kNone) break;
                    const int32_t id = node_token_[node];
                    if (id >= 0) {
                        best_id = id;
                        best_end = i + 1;
                    }
                }
            }
            if (best_id < 0) {
                emit(unk_id_, source[0], source[n - 1] + 1);
                return;
            }
            pieces[count++] = Piece{best_id, static_cast<uint32_t>(pos), static_cast<uint32_t>(best_end)};
            pos = best_end;
        }
        for (size_t k = 0; k < count; ++k) emit(pieces[k].id, source[pieces[k].begin], source[pieces[k].end - 1] + 1);
    }

  private:
    struct Piece {
        int32_t id;
        uint32_t begin, end;  // byte range in the word
    };
    struct Edge {
        uint32_t key;    // (node << 8 | byte) + 1; 0 = empty slot
        uint32_t child;
    };
    static constexpr uint32_t kRoot = 0;
    static constexpr uint32_t kNone = 0xFFFFFFFFu;

    uint32_t child(uint32_t node, unsigned char byte) const {
        const uint32_t key = ((node << 8) | byte) + 1;
        size_t h = static_cast<size_t>((uint64_t(key) * 0x9E3779B97F4A7C15ull) >> hash_shift_);
        for (;;) {
            const Edge& e = edges_[h];
            if (e.key == key) return e.child;
            if (e.key == 0) return kNone;
            h = (h + 1) & hash_mask_;
        }
    }
    uint32_t insert(std::string_view token);  // returns the node of `token`, creating nodes as needed

    std::vector<Edge> edges_;
    std::vector<int32_t> node_token_;  // token id ending at each node, or -1
    unsigned hash_shift_ = 64;
    size_t hash_mask_ = 0;
    uint32_t continuation_root_ = kNone;
    int32_t unk_id_;
    size_t max_chars_;
};

}  // namespace fastbert
