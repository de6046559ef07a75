// The BERT tokenizer: added tokens -> BertNormalizer -> BertPreTokenizer -> WordPiece -> post-processing
// (truncation with overflowing windows, [CLS] A [SEP] (B [SEP]), padding), over a batch on several threads.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "added_tokens.h"
#include "normalizer.h"
#include "post_processor.h"
#include "wordpiece.h"

namespace fastbert {

enum class Padding { kNone, kLongest, kMaxLength };

struct EncodeOptions {
    bool add_special_tokens = true;
    Truncation truncation = Truncation::kNone;
    size_t max_length = 0;          // truncation limit (and padding length for kMaxLength), special tokens included
    size_t stride = 0;              // overlap of consecutive overflowing windows
    Side truncation_side = Side::kRight;
    bool overflowing = false;       // return the overflowing windows as further rows
    Padding padding = Padding::kNone;
    Side padding_side = Side::kRight;
    size_t pad_to_multiple_of = 0;  // 0: off
    bool split_special_tokens = false;  // do not match special added tokens (they are tokenized as text)
    int num_threads = 1;
};

struct Scratch;  // per-thread working memory of Tokenizer (tokenizer.cpp)

struct SpecialIds {
    int32_t unk = -1, cls = -1, sep = -1, pad = -1;
    int32_t pad_type_id = 0;
    // The pair template: false, BERT's [CLS] A [SEP] B [SEP] (B and its [SEP] of type 1); true, RoBERTa's
    // <s> A </s></s> B </s> (MPNet's WordPiece tokenizer), every type id 0, and the offsets of an added token
    // exclude the whitespace its lstrip/rstrip took (RoBERTa's post-processor trims them: trim_offsets).
    bool double_sep = false;
    size_t added(bool pair) const { return pair ? (double_sep ? 4 : 3) : 2; }  // special tokens per row
};

// One token of a sequence: vocabulary id, its span in the input in characters, and its word: the index of the
// pre-tokenizer word (or added token) in a text, or the index of the word in a pre-tokenized input.
struct Token {
    int32_t id;
    int32_t start, end;
    int32_t word;
};

// A batch of input sequences. Sequence i is the text pieces[i], or with split_into_words the words
// pieces[starts[i]], ..., pieces[starts[i + 1] - 1] of a pre-tokenized input.
struct Sequences {
    std::vector<std::string_view> pieces;
    std::vector<size_t> starts;  // size() + 1 entries, only with split_into_words
    bool split_into_words = false;

    size_t size() const { return split_into_words ? (starts.empty() ? 0 : starts.size() - 1) : pieces.size(); }
};

// The encoded batch: one row per input, or with overflowing tokens one row per window. Rows are laid out as
// [pads (left padding)] [CLS] A [SEP] ([SEP] if double_sep) (B [SEP]) [pads (right padding)].
class Encodings {
  public:
    // Destinations of write(); null fields are skipped. Each holds total() entries (offsets: 2 * total()).
    struct Outputs {
        int64_t* input_ids = nullptr;
        int64_t* token_type_ids = nullptr;
        int64_t* attention_mask = nullptr;
        int64_t* special_tokens_mask = nullptr;  // 1 for [CLS], [SEP] and padding
        int64_t* offsets = nullptr;              // (start, end) in characters; (0, 0) for special tokens
        int64_t* word_ids = nullptr;             // -1 for special tokens and padding
        int64_t* sequence_ids = nullptr;         // 0 (first), 1 (second), -1 for special tokens and padding
    };

    size_t rows() const { return rows_.size(); }
    size_t total() const { return static_cast<size_t>(row_starts_.back()); }
    int64_t row_start(size_t r) const { return row_starts_[r]; }
    size_t row_length(size_t r) const { return rows_[r].length; }
    size_t sample_of(size_t r) const { return rows_[r].sample; }  // the input a row comes from
    bool rectangular() const { return rectangular_; }             // all rows have the same length
    bool has_pair() const { return has_pair_; }

    // Fills the requested outputs, rows in parallel on up to num_threads threads.
    void write(const Outputs& out, int num_threads) const;
    // Fills the requested outputs of row r only: each holds row_length(r) entries (offsets: twice that).
    void write_row(size_t r, const Outputs& out) const;

  private:
    friend class Tokenizer;
    struct Row {
        uint32_t sample;
        Span a, b;                 // windows of the first and second sequence
        uint32_t pad_left, length; // length: pads included
    };
    template <class Cell>
    void for_each_cell(size_t r, Cell&& cell) const;
    void write_rows(size_t lo, size_t hi, const Outputs& out, bool relative) const;

    std::vector<std::vector<Token>> chunks_;  // tokens of texts [c * grain, (c + 1) * grain) in chunk c
    std::vector<uint32_t> chunk_of_, begin_, len_a_;  // per input: its chunk, first token, tokens of A
    std::vector<Row> rows_;
    std::vector<int64_t> row_starts_{0};
    bool has_pair_ = false, specials_ = true, rectangular_ = true;
    SpecialIds special_;
};

class Tokenizer {
  public:
    // `added_tokens` are matched in the text before WordPiece (see added_tokens.h); the ids of `special` must
    // be valid (unk at least) or -1 when unused.
    Tokenizer(const std::vector<std::pair<std::string, int32_t>>& vocab, const std::vector<AddedTokenSpec>& added_tokens,
              const NormalizerOptions& normalizer, const SpecialIds& special, std::string continuing_subword_prefix = "##",
              size_t max_input_chars_per_word = 100);

    // Appends the tokens of `text` (no special tokens added) to `out`.
    void encode(std::string_view text, std::vector<Token>& out) const;

    // Encodes a batch, or a batch of pairs when `second` is non-null (same size as `first`). Throws
    // std::invalid_argument for options that cannot be satisfied (truncation that cannot reach max_length, a
    // max_length smaller than the special tokens, a stride not smaller than the kept window); messages name the
    // input.
    std::shared_ptr<Encodings> encode_batch(const Sequences& first, const Sequences* second,
                                            const EncodeOptions& options) const;

    int32_t token_to_id(std::string_view token) const;
    std::string normalize(std::string_view text) const;  // the text after the BERT normalizer
    const SpecialIds& special_ids() const { return special_; }
    const NormalizerOptions& normalizer_options() const { return normalizer_.options(); }

  private:
    template <class Emit>
    void encode_sequence(const Sequences& batch, size_t i, bool split_special, Scratch& scratch,
                         Emit&& emit) const;
    template <class Emit>
    void encode_piece(std::string_view text, int32_t word, bool split_special, Scratch& scratch, Emit&& emit) const;

    AddedTokens raw_added_;         // added tokens with normalized=false: matched in the raw text
    AddedTokens normalized_added_;  // normalized=true: matched in the normalized text
    BertNormalizer normalizer_;
    WordPiece wordpiece_;
    SpecialIds special_;
    std::vector<std::pair<std::string, int32_t>> added_ids_;
};

}  // namespace fastbert
