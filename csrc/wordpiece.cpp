#include "wordpiece.h"

#include <stdexcept>

namespace fastbert {

WordPiece::WordPiece(const std::vector<std::pair<std::string, int32_t>>& vocab, int32_t unk_id,
                     std::string continuing_subword_prefix, size_t max_input_chars_per_word)
    : unk_id_(unk_id), max_chars_(max_input_chars_per_word) {
    size_t bytes = 0;
    for (const auto& entry : vocab) bytes += entry.first.size();
    // At most one edge per byte; keep the load factor at or below 1/2.
    size_t capacity = 16;
    unsigned bits = 4;
    while (capacity < 2 * (bytes + continuing_subword_prefix.size()) + 16) {
        capacity *= 2;
        ++bits;
    }
    if (bytes + 1 >= (1u << 24)) throw std::invalid_argument("vocabulary too large for the WordPiece trie");
    edges_.assign(capacity, Edge{0, 0});
    hash_shift_ = 64 - bits;
    hash_mask_ = capacity - 1;
    node_token_.push_back(-1);  // root
    for (const auto& [token, id] : vocab) {
        if (token.empty()) continue;
        node_token_[insert(token)] = id;
    }
    continuation_root_ = insert(continuing_subword_prefix);
}

uint32_t WordPiece::insert(std::string_view token) {
    uint32_t node = kRoot;
    for (unsigned char byte : token) {
        uint32_t next = child(node, byte);
        if (next == kNone) {
            next = static_cast<uint32_t>(node_token_.size());
            node_token_.push_back(-1);
            const uint32_t key = ((node << 8) | byte) + 1;
            size_t h = static_cast<size_t>((uint64_t(key) * 0x9E3779B97F4A7C15ull) >> hash_shift_);
            while (edges_[h].key != 0) h = (h + 1) & hash_mask_;
            edges_[h] = Edge{key, next};
        }
        node = next;
    }
    return node;
}

int32_t WordPiece::token_to_id(std::string_view token) const {
    uint32_t node = kRoot;
    for (unsigned char byte : token) {
        node = child(node, byte);
        if (node == kNone) return -1;
    }
    return node_token_[node];
}

}  // namespace fastbert
