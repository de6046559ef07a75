// The BERT tokenizer: added tokens -> BertNormalizer -> BertPreTokenizer -> WordPiece -> post-processing
// ([CLS] A [SEP] (B [SEP]), truncation, padding), over a batch on several threads.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "added_tokens.h"
#include "normalizer.h"
#include "wordpiece.h"

namespace fastbert {

enum class Truncation { kNone, kLongestFirst, kOnlyFirst, kOnlySecond };
enum class Padding { kNone, kLongest, kMaxLength };

struct EncodeOptions {
    bool add_special_tokens = true;
    Truncation truncation = Truncation::kNone;
    size_t max_length = 0;          // truncation limit (and padding length for kMaxLength)
    Padding padding = Padding::kNone;
    size_t pad_to_multiple_of = 0;  // 0: off
    bool offsets = false;           // also produce offset_mapping
    int num_threads = 1;
};

struct SpecialIds {
    int32_t unk = -1, cls = -1, sep = -1, pad = -1;
    int32_t pad_type_id = 0;
};

// Rows of int64 outputs: padded (rectangular, `width` columns) or ragged (`row_starts`).
struct BatchEncoding {
    size_t rows = 0;
    size_t width = 0;                 // padded row length, 0 when not padded
    std::vector<int64_t> row_starts;  // rows + 1 entries
    std::vector<int64_t> input_ids, token_type_ids, attention_mask;
    std::vector<int64_t> offsets;     // 2 per token (start, end) in characters, when requested
};

// One token of a sequence: vocabulary id and its span in the input, in characters.
struct Token {
    int32_t id;
    int32_t start, end;
};

class Tokenizer {
  public:
    Tokenizer(const std::vector<std::pair<std::string, int32_t>>& vocab,
              const std::vector<std::pair<std::string, int32_t>>& added_tokens, const NormalizerOptions& normalizer,
              const SpecialIds& special, std::string continuing_subword_prefix = "##",
              size_t max_input_chars_per_word = 100);

    // Appends the tokens of `text` (no special tokens added) to `out`.
    void encode(std::string_view text, std::vector<Token>& out) const;

    // Encodes a batch of texts, or of pairs when `second` is non-null (same length as `first`).
    // Throws std::invalid_argument when truncation cannot satisfy max_length (as Hugging Face does).
    BatchEncoding encode_batch(const std::vector<std::string_view>& first, const std::vector<std::string_view>* second,
                               const EncodeOptions& options) const;

    int32_t token_to_id(std::string_view token) const;
    const SpecialIds& special_ids() const { return special_; }
    const NormalizerOptions& normalizer_options() const { return normalizer_.options(); }

  private:
    AddedTokens added_;
    BertNormalizer normalizer_;
    WordPiece wordpiece_;
    SpecialIds special_;
    std::vector<std::pair<std::string, int32_t>> added_list_;
};

// Lengths (la, lb) the two sequences keep so that la + lb <= max_length; Hugging Face's rules.
// `has_pair` distinguishes a single sequence from a pair with an empty second sequence.
std::pair<size_t, size_t> truncated_lengths(size_t la, size_t lb, bool has_pair, Truncation strategy,
                                            size_t max_length);

}  // namespace fastbert
