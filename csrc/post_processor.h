// Post-processing of a tokenized input, as Hugging Face's tokenizers does it: truncation into a kept window and
// overflowing windows (with stride), the combination of the windows of a pair into rows, and the BERT template
// [CLS] A [SEP] (B [SEP]). Pure arithmetic on token counts; the tokens themselves live in Encodings.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace fastbert {

enum class Truncation { kNone, kLongestFirst, kOnlyFirst, kOnlySecond };
enum class Side { kRight, kLeft };

// A window [begin, end) of the tokens of one sequence.
struct Span {
    uint32_t begin = 0, end = 0;
    uint32_t size() const { return end - begin; }
};

struct TruncationParams {
    Truncation strategy = Truncation::kNone;
    size_t max_length = 0;  // tokens of the sequence(s), special tokens already subtracted
    size_t stride = 0;      // tokens repeated from the end of one window at the start of the next
    Side side = Side::kRight;
};

// Encoding::truncate: cuts a sequence of n tokens into windows of at most max_len tokens, each overlapping the
// previous one by `stride` tokens; out[0] is kept, the others overflow. max_len == 0 keeps nothing (the whole
// sequence overflows). Throws std::invalid_argument when a cut is needed and stride >= max_len.
void truncate_windows(size_t n, size_t max_len, size_t stride, Side side, std::vector<Span>& out);

// truncate_encodings: the windows of the first (la tokens) and second (lb tokens) sequence. Throws
// std::invalid_argument, as Hugging Face raises, when "only_first"/"only_second" cannot shorten their sequence
// enough or "only_second" has no second sequence.
void truncate_sequences(size_t la, size_t lb, bool has_pair, const TruncationParams& params, std::vector<Span>& a,
                        std::vector<Span>& b);

// The rows that the windows of a pair become, in Hugging Face's order: (a[0], b[0]) first, then for each
// overflowing a[i] the rows (a[i], b[0]), (a[i], b[1]), ..., then (a[0], b[j]) for each overflowing b[j].
// Calls row(const Span& a, const Span& b); a single sequence passes b = {{0, 0}}.
template <class Row>
void for_each_window_pair(const std::vector<Span>& a, const std::vector<Span>& b, Row&& row) {
    row(a[0], b[0]);
    for (size_t i = 1; i < a.size(); ++i)
        for (size_t j = 0; j < b.size(); ++j) row(a[i], b[j]);
    for (size_t j = 1; j < b.size(); ++j) row(a[0], b[j]);
}

}  // namespace fastbert
