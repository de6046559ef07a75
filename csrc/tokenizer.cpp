#include "tokenizer.h"

#include <algorithm>
#include <stdexcept>

#include "parallel.h"
#include "pre_tokenizer.h"

namespace fastbert {

namespace {

// Below this many input bytes per thread, extra threads cost more than they save.
constexpr size_t kBytesPerThread = 16 * 1024;
constexpr size_t kEncodeGrain = 16;   // texts per work item
constexpr size_t kFillGrain = 256;    // rows per work item when writing outputs

int threads_for(size_t work_bytes, int requested) {
    const size_t useful = work_bytes / kBytesPerThread + 1;
    return static_cast<int>(std::min<size_t>(std::max(requested, 1), useful));
}

size_t bytes_of(const Sequences& s) {
    size_t total = 0;
    for (auto p : s.pieces) total += p.size();
    return total;
}

std::string which_input(size_t i) { return "input " + std::to_string(i) + ": "; }

}  // namespace

// Per-thread scratch space of the tokenizer.
struct Scratch {
    BertPreTokenizer pre;
    std::string normalized;        // normalized text, when normalized added tokens must be searched in it
    std::vector<int32_t> sources;  // input character of each byte of `normalized`
};

Tokenizer::Tokenizer(const std::vector<std::pair<std::string, int32_t>>& vocab,
                     const std::vector<AddedTokenSpec>& added_tokens, const NormalizerOptions& normalizer,
                     const SpecialIds& special, std::string continuing_subword_prefix, size_t max_input_chars_per_word)
    : normalizer_(normalizer),
      wordpiece_(vocab, special.unk, std::move(continuing_subword_prefix), max_input_chars_per_word),
      special_(special) {
    if (special.unk < 0) throw std::invalid_argument("the vocabulary has no unknown token ([UNK])");
    std::vector<AddedTokens::Pattern> raw, normalized;
    for (const auto& t : added_tokens) {
        added_ids_.emplace_back(t.content, t.id);
        AddedTokens::Pattern p{t.content, t.id, t.single_word, t.lstrip, t.rstrip, t.special};
        if (t.normalized) {
            p.text.clear();
            normalizer_.run(t.content, 0, [&](const char* s, size_t n, int32_t) { p.text.append(s, n); });
            normalized.push_back(std::move(p));
        } else {
            raw.push_back(std::move(p));
        }
    }
    raw_added_ = AddedTokens(std::move(raw));
    normalized_added_ = AddedTokens(std::move(normalized));
}

int32_t Tokenizer::token_to_id(std::string_view token) const {
    for (const auto& [content, id] : added_ids_)
        if (content == token) return id;
    return wordpiece_.token_to_id(token);
}

// Tokens of one text (or one word of a pre-tokenized input, then every token has word `word`); offsets count
// characters from the start of `text`. emit(id, start, end, word).
template <class Emit>
void Tokenizer::encode_piece(std::string_view text, int32_t word, bool split_special, Scratch& scratch,
                             Emit&& emit) const {
    int32_t next_word = 0;
    auto word_of = [&]() FASTBERT_INLINE_LAMBDA { return word >= 0 ? word : next_word++; };
    auto on_word = [&](std::string_view w, const int32_t* source) FASTBERT_INLINE_LAMBDA {
        const int32_t index = word_of();
        wordpiece_.tokenize(w, source, [&](int32_t id, int32_t s, int32_t e) FASTBERT_INLINE_LAMBDA {
            emit(id, s, e, index);
        });
    };
    auto on_char = [&](const char* s, size_t n, int32_t source) FASTBERT_INLINE_LAMBDA {
        scratch.pre.push(s, n, source, on_word);
    };
    int32_t ci = 0;     // index of the current input character
    size_t ci_byte = 0;  // its byte position in `text`
    raw_added_.split(
        text, split_special,
        [&](std::string_view segment) {
            ci_byte = static_cast<size_t>(segment.data() - text.data()) + segment.size();
            if (normalized_added_.empty()) {
                ci = normalizer_.run(segment, ci, on_char);
                scratch.pre.finish(on_word);
                return;
            }
            // Normalize the segment, then look for the normalized added tokens in it.
            std::string& norm = scratch.normalized;
            std::vector<int32_t>& sources = scratch.sources;
            norm.clear();
            sources.clear();
            ci = normalizer_.run(segment, ci, [&](const char* s, size_t n, int32_t source) {
                norm.append(s, n);
                sources.insert(sources.end(), n, source);
            });
            normalized_added_.split(
                norm, split_special,
                [&](std::string_view piece) {
                    const size_t base = static_cast<size_t>(piece.data() - norm.data());
                    for (size_t k = 0; k < piece.size();) {
                        const size_t n = unicode::utf8_length(static_cast<unsigned char>(piece[k]));
                        scratch.pre.push(piece.data() + k, n, sources[base + k], on_word);
                        k += n;
                    }
                    scratch.pre.finish(on_word);
                },
                [&](int32_t id, size_t begin, size_t end, size_t content_begin, size_t content_end) {
                    if (special_.double_sep) begin = content_begin, end = content_end;  // trimmed (see SpecialIds)
                    emit(id, sources[begin], sources[end - 1] + 1, word_of());
                });
        },
        [&](int32_t id, size_t begin, size_t end, size_t content_begin, size_t content_end) {
            // begin >= ci_byte, except after an rstrip token (see AddedTokens::split)
            const int32_t start = begin >= ci_byte
                                      ? ci + static_cast<int32_t>(unicode::count_chars(text.data() + ci_byte, begin - ci_byte))
                                      : ci - static_cast<int32_t>(unicode::count_chars(text.data() + begin, ci_byte - begin));
            ci = start + static_cast<int32_t>(unicode::count_chars(text.data() + begin, end - begin));
            ci_byte = end;
            if (!special_.double_sep) {
                emit(id, start, ci, word_of());
                return;
            }
            // RoBERTa's post-processor trims the whitespace lstrip/rstrip took from the token's offsets
            const int32_t lead = static_cast<int32_t>(unicode::count_chars(text.data() + begin, content_begin - begin));
            const int32_t trail = static_cast<int32_t>(unicode::count_chars(text.data() + content_end, end - content_end));
            emit(id, start + lead, ci - trail, word_of());
        });
}

template <class Emit>
void Tokenizer::encode_sequence(const Sequences& batch, size_t i, bool split_special, Scratch& scratch,
                                Emit&& emit) const {
    if (!batch.split_into_words) {
        encode_piece(batch.pieces[i], -1, split_special, scratch, emit);
        return;
    }
    for (size_t k = batch.starts[i]; k < batch.starts[i + 1]; ++k)
        encode_piece(batch.pieces[k], static_cast<int32_t>(k - batch.starts[i]), split_special, scratch, emit);
}

std::string Tokenizer::normalize(std::string_view text) const {
    std::string out;
    normalizer_.run(text, 0, [&](const char* s, size_t n, int32_t) { out.append(s, n); });
    return out;
}

void Tokenizer::encode(std::string_view text, std::vector<Token>& out) const {
    Scratch scratch;
    encode_piece(text, -1, false, scratch,
                 [&](int32_t id, int32_t start, int32_t end, int32_t word) { out.push_back(Token{id, start, end, word}); });
}

std::shared_ptr<Encodings> Tokenizer::encode_batch(const Sequences& first, const Sequences* second,
                                                   const EncodeOptions& options) const {
    const size_t n = first.size();
    const bool has_pair = second != nullptr;
    if (has_pair && second->size() != n) throw std::invalid_argument("text and text_pair differ in length");
    const bool specials = options.add_special_tokens;
    const size_t n_added = specials ? special_.added(has_pair) : 0;
    const char* layout = !has_pair ? "text ([CLS] A [SEP])"
                         : special_.double_sep ? "pair (<s> A </s></s> B </s>)" : "pair ([CLS] A [SEP] B [SEP])";
    if (options.truncation != Truncation::kNone && options.max_length < n_added)
        throw std::invalid_argument(
            "max_length=" + std::to_string(options.max_length) + " is smaller than the " + std::to_string(n_added) +
            " special tokens added to each " + layout +
            ": truncation cannot reach it (use max_length >= " + std::to_string(n_added) +
            " or add_special_tokens=False)");
    // Hugging Face checks this when truncation is set, with the 2 special tokens of a single text.
    if (options.truncation != Truncation::kNone && options.max_length >= 2 && options.max_length - 2 < options.stride)
        throw std::invalid_argument("stride=" + std::to_string(options.stride) +
                                    " is greater than the effective max length of " +
                                    std::to_string(options.max_length - 2) + " (max_length=" +
                                    std::to_string(options.max_length) + " minus 2 special tokens)");
    if (specials && (special_.cls < 0 || special_.sep < 0))
        throw std::invalid_argument("add_special_tokens=True needs a [CLS] and a [SEP] token in the vocabulary");
    if (options.padding != Padding::kNone && special_.pad < 0)
        throw std::invalid_argument("padding needs a padding token ([PAD]) in the vocabulary");

    auto enc = std::make_shared<Encodings>();
    enc->has_pair_ = has_pair;
    enc->specials_ = specials;
    enc->special_ = special_;
    const size_t total_bytes = bytes_of(first) + (has_pair ? bytes_of(*second) : 0);
    const int threads = threads_for(total_bytes, options.num_threads);

    // 1. Tokenize every sequence. Work item c (texts [c*grain, (c+1)*grain)) appends to its own vector.
    const size_t chunks = (n + kEncodeGrain - 1) / kEncodeGrain;
    enc->chunks_.resize(std::max<size_t>(chunks, 1));
    enc->chunk_of_.resize(n);
    enc->begin_.resize(n);
    enc->len_a_.resize(n);
    std::vector<uint32_t> len_b(n, 0);
    parallel_for(n, kEncodeGrain, threads, [&](size_t lo, size_t hi) {
        const size_t chunk = lo / kEncodeGrain;
        auto& out = enc->chunks_[chunk];
        Scratch scratch;
        auto emit = [&](int32_t id, int32_t start, int32_t end, int32_t word) {
            out.push_back(Token{id, start, end, word});
        };
        for (size_t i = lo; i < hi; ++i) {
            enc->chunk_of_[i] = static_cast<uint32_t>(chunk);
            enc->begin_[i] = static_cast<uint32_t>(out.size());
            encode_sequence(first, i, options.split_special_tokens, scratch, emit);
            enc->len_a_[i] = static_cast<uint32_t>(out.size() - enc->begin_[i]);
            if (has_pair) {
                encode_sequence(*second, i, options.split_special_tokens, scratch, emit);
                len_b[i] = static_cast<uint32_t>(out.size() - enc->begin_[i] - enc->len_a_[i]);
            }
        }
    });

    // 2. Truncate into windows and lay out the rows ([CLS] A [SEP] (B [SEP])), unpadded for now.
    TruncationParams params;
    params.strategy = options.truncation;
    params.max_length = options.truncation == Truncation::kNone ? 0 : options.max_length - n_added;
    params.stride = options.stride;
    params.side = options.truncation_side;
    std::vector<Span> wa, wb;
    auto& rows = enc->rows_;
    rows.reserve(n);
    size_t longest = 0;  // longest first row of an input (overflowing rows do not count, as in Hugging Face)
    for (size_t i = 0; i < n; ++i) {
        try {
            truncate_sequences(enc->len_a_[i], len_b[i], has_pair, params, wa, wb);
        } catch (const std::invalid_argument& e) {
            throw std::invalid_argument(which_input(i) + e.what());
        }
        const size_t first_row = rows.size();
        auto add_row = [&](const Span& a, const Span& b) {
            const auto length = static_cast<uint32_t>(a.size() + b.size() + n_added);
            rows.push_back(Encodings::Row{static_cast<uint32_t>(i), a, b, 0, length});
        };
        if (options.overflowing) for_each_window_pair(wa, wb, add_row);
        else add_row(wa[0], wb[0]);
        longest = std::max<size_t>(longest, rows[first_row].length);
    }

    // 3. Pad.
    size_t target = 0;
    if (options.padding == Padding::kLongest) target = longest;
    else if (options.padding == Padding::kMaxLength) target = options.max_length;
    if (options.padding != Padding::kNone && options.pad_to_multiple_of > 0 && target % options.pad_to_multiple_of)
        target += options.pad_to_multiple_of - target % options.pad_to_multiple_of;
    auto& starts = enc->row_starts_;
    starts.resize(rows.size() + 1);
    int64_t pos = 0;
    for (size_t r = 0; r < rows.size(); ++r) {
        auto& row = rows[r];
        if (row.length < target) {
            if (options.padding_side == Side::kLeft) row.pad_left = static_cast<uint32_t>(target - row.length);
            row.length = static_cast<uint32_t>(target);
        }
        if (r > 0 && row.length != rows[0].length) enc->rectangular_ = false;
        starts[r] = pos;
        pos += row.length;
    }
    starts[rows.size()] = pos;
    return enc;
}

// Calls cell(kind, const Token* token, int32_t type_id) for each position of row r, in order; kind: 0 pad,
// 1 [CLS]/[SEP] (token null), 2 a token of the first sequence, 3 of the second. Runs of pads and tokens are
// passed as cell(kind, tokens, type_id, count) to let writers fill them in one go.
template <class Cell>
void Encodings::for_each_cell(size_t r, Cell&& cell) const {
    const Row& row = rows_[r];
    const Token* tokens = chunks_[chunk_of_[row.sample]].data() + begin_[row.sample];
    const uint32_t content = row.a.size() + row.b.size() + (specials_ ? special_.added(has_pair_) : 0);
    if (row.pad_left) cell(0, nullptr, special_.pad_type_id, row.pad_left);
    if (specials_) cell(1, nullptr, 0, 1);
    if (row.a.size()) cell(2, tokens + row.a.begin, 0, row.a.size());
    if (specials_) cell(1, nullptr, 0, 1);
    if (has_pair_) {
        const int32_t type_b = special_.double_sep ? 0 : 1;
        if (specials_ && special_.double_sep) cell(1, nullptr, 0, 1);
        if (row.b.size()) cell(3, tokens + len_a_[row.sample] + row.b.begin, type_b, row.b.size());
        if (specials_) cell(1, nullptr, type_b, 1);
    }
    const uint32_t right = row.length - row.pad_left - content;
    if (right) cell(0, nullptr, special_.pad_type_id, right);
}

void Encodings::write_rows(size_t lo, size_t hi, const Outputs& out, bool relative) const {
    for (size_t r = lo; r < hi; ++r) {
        size_t p = relative ? 0 : static_cast<size_t>(row_starts_[r]);
        bool first_special = true;  // the first [CLS]/[SEP] of a row is [CLS]
        for_each_cell(r, [&](int kind, const Token* t, int32_t type, uint32_t count) {
            const bool is_token = kind >= 2;
            if (out.input_ids) {
                int64_t* d = out.input_ids + p;
                if (is_token) {
                    for (uint32_t k = 0; k < count; ++k) d[k] = t[k].id;
                } else {
                    const int32_t id = kind == 0 ? special_.pad : (first_special ? special_.cls : special_.sep);
                    std::fill(d, d + count, id);
                }
            }
            if (out.token_type_ids) std::fill(out.token_type_ids + p, out.token_type_ids + p + count, type);
            if (out.attention_mask) std::fill(out.attention_mask + p, out.attention_mask + p + count, kind != 0);
            if (out.special_tokens_mask)
                std::fill(out.special_tokens_mask + p, out.special_tokens_mask + p + count, !is_token);
            if (out.offsets) {
                int64_t* d = out.offsets + 2 * p;
                if (is_token) {
                    for (uint32_t k = 0; k < count; ++k) {
                        d[2 * k] = t[k].start;
                        d[2 * k + 1] = t[k].end;
                    }
                } else {
                    std::fill(d, d + 2 * count, 0);
                }
            }
            if (out.word_ids) {
                int64_t* d = out.word_ids + p;
                if (is_token) {
                    for (uint32_t k = 0; k < count; ++k) d[k] = t[k].word;
                } else {
                    std::fill(d, d + count, -1);
                }
            }
            if (out.sequence_ids) std::fill(out.sequence_ids + p, out.sequence_ids + p + count, is_token ? kind - 2 : -1);
            if (kind == 1) first_special = false;
            p += count;
        });
    }
}

void Encodings::write(const Outputs& out, int num_threads) const {
    parallel_for(rows(), kFillGrain, threads_for(total() * 32, num_threads),
                 [&](size_t lo, size_t hi) { write_rows(lo, hi, out, false); });
}

void Encodings::write_row(size_t r, const Outputs& out) const { write_rows(r, r + 1, out, true); }

}  // namespace fastbert
