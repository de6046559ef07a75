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

// Appends the tokens of `text` to `out`, using `pre` as scratch space.
template <class Emit>
void encode_text(std::string_view text, const AddedTokens& added, const BertNormalizer& normalizer,
                 const WordPiece& wordpiece, BertPreTokenizer& pre, Emit&& emit) {
    int32_t ci = 0;  // index of the current input character
    auto on_word = [&](std::string_view word, const int32_t* source) { wordpiece.tokenize(word, source, emit); };
    auto on_char = [&](const char* s, size_t n, int32_t source) { pre.push(s, n, source, on_word); };
    added.split(
        text,
        [&](std::string_view segment) {
            ci = normalizer.run(segment, ci, on_char);
            pre.finish(on_word);
        },
        [&](const AddedTokens::Token& t) {
            emit(t.id, ci, ci + t.chars);
            ci += t.chars;
        });
}

}  // namespace

Tokenizer::Tokenizer(const std::vector<std::pair<std::string, int32_t>>& vocab,
                     const std::vector<std::pair<std::string, int32_t>>& added_tokens,
                     const NormalizerOptions& normalizer, const SpecialIds& special,
                     std::string continuing_subword_prefix, size_t max_input_chars_per_word)
    : added_(added_tokens),
      normalizer_(normalizer),
      wordpiece_(vocab, special.unk, std::move(continuing_subword_prefix), max_input_chars_per_word),
      special_(special),
      added_list_(added_tokens) {
    if (special.unk < 0) throw std::invalid_argument("the vocabulary has no unknown token ([UNK])");
}

int32_t Tokenizer::token_to_id(std::string_view token) const {
    for (const auto& [content, id] : added_list_)
        if (content == token) return id;
    return wordpiece_.token_to_id(token);
}

void Tokenizer::encode(std::string_view text, std::vector<Token>& out) const {
    BertPreTokenizer pre;
    encode_text(text, added_, normalizer_, wordpiece_, pre,
                [&](int32_t id, int32_t start, int32_t end) { out.push_back(Token{id, start, end}); });
}

std::pair<size_t, size_t> truncated_lengths(size_t la, size_t lb, bool has_pair, Truncation strategy,
                                            size_t max_length) {
    if (strategy == Truncation::kNone) return {la, lb};
    if (max_length == 0) return {0, 0};
    if (la + lb <= max_length) return {la, lb};
    switch (strategy) {
        case Truncation::kLongestFirst: {
            if (!has_pair) return {max_length, 0};
            size_t n1 = la, n2 = lb;
            const bool swap = n1 > n2;
            if (swap) std::swap(n1, n2);
            n2 = n1 > max_length ? n1 : std::max(n1, max_length - n1);
            if (n1 + n2 > max_length) {
                n1 = max_length / 2;
                n2 = n1 + max_length % 2;
            }
            if (swap) std::swap(n1, n2);
            return {std::min(la, n1), std::min(lb, n2)};
        }
        case Truncation::kOnlyFirst:
        case Truncation::kOnlySecond: {
            const bool first = strategy == Truncation::kOnlyFirst;
            if (!first && !has_pair) throw std::invalid_argument("Truncation error: Second sequence not provided");
            const size_t to_remove = la + lb - max_length;
            const size_t target = first ? la : lb;
            if (target <= to_remove)
                throw std::invalid_argument(
                    "Truncation error: Sequence to truncate too short to respect the provided max_length");
            return first ? std::make_pair(la - to_remove, lb) : std::make_pair(la, lb - to_remove);
        }
        case Truncation::kNone:
            break;
    }
    return {la, lb};
}

BatchEncoding Tokenizer::encode_batch(const std::vector<std::string_view>& first,
                                      const std::vector<std::string_view>* second,
                                      const EncodeOptions& options) const {
    const size_t n = first.size();
    const bool has_pair = second != nullptr;
    if (has_pair && second->size() != n) throw std::invalid_argument("text and text_pair differ in length");
    size_t total_bytes = 0;
    for (auto s : first) total_bytes += s.size();
    if (has_pair)
        for (auto s : *second) total_bytes += s.size();

    // 1. Tokenize every sequence. Work item c (texts [c*grain, (c+1)*grain)) appends to its own vector.
    const size_t chunks = (n + kEncodeGrain - 1) / kEncodeGrain;
    std::vector<std::vector<Token>> chunk_tokens(std::max<size_t>(chunks, 1));
    std::vector<uint32_t> chunk_of(n), begin(n), len_a(n), len_b(n, 0);
    const int threads = threads_for(total_bytes, options.num_threads);
    parallel_for(n, kEncodeGrain, threads, [&](size_t lo, size_t hi) {
        const size_t chunk = lo / kEncodeGrain;
        auto& out = chunk_tokens[chunk];
        BertPreTokenizer pre;
        auto emit = [&](int32_t id, int32_t start, int32_t end) { out.push_back(Token{id, start, end}); };
        for (size_t i = lo; i < hi; ++i) {
            chunk_of[i] = static_cast<uint32_t>(chunk);
            begin[i] = static_cast<uint32_t>(out.size());
            encode_text(first[i], added_, normalizer_, wordpiece_, pre, emit);
            len_a[i] = static_cast<uint32_t>(out.size() - begin[i]);
            if (has_pair) {
                encode_text((*second)[i], added_, normalizer_, wordpiece_, pre, emit);
                len_b[i] = static_cast<uint32_t>(out.size() - begin[i] - len_a[i]);
            }
        }
    });

    // 2. Truncate, count special tokens, pad: the length of every row.
    const bool specials = options.add_special_tokens;
    const size_t n_added = specials ? (has_pair ? 3 : 2) : 0;
    Truncation strategy = options.truncation;
    size_t limit = options.max_length;
    if (strategy != Truncation::kNone) {
        if (limit < n_added) strategy = Truncation::kNone;  // as Hugging Face: too small a limit is ignored
        else limit -= n_added;
    }
    std::vector<uint32_t> keep_a(n), keep_b(n);
    BatchEncoding result;
    result.rows = n;
    result.row_starts.resize(n + 1);
    size_t longest = 0;
    for (size_t i = 0; i < n; ++i) {
        const auto [ka, kb] = truncated_lengths(len_a[i], len_b[i], has_pair, strategy, limit);
        keep_a[i] = static_cast<uint32_t>(ka);
        keep_b[i] = static_cast<uint32_t>(kb);
        longest = std::max(longest, ka + kb + n_added);
    }
    size_t target = 0;
    if (options.padding == Padding::kLongest) target = longest;
    else if (options.padding == Padding::kMaxLength) target = options.max_length;
    if (options.padding != Padding::kNone && options.pad_to_multiple_of > 0 && target % options.pad_to_multiple_of)
        target += options.pad_to_multiple_of - target % options.pad_to_multiple_of;
    int64_t pos = 0;
    bool rectangular = true;
    for (size_t i = 0; i < n; ++i) {
        result.row_starts[i] = pos;
        const size_t len = std::max<size_t>(keep_a[i] + keep_b[i] + n_added, target);
        if (i > 0 && len != static_cast<size_t>(pos - result.row_starts[i - 1])) rectangular = false;
        pos += static_cast<int64_t>(len);
    }
    result.row_starts[n] = pos;
    result.width = (rectangular && n > 0) ? static_cast<size_t>(pos) / n : 0;

    // 3. Write the outputs.
    const size_t total = static_cast<size_t>(pos);
    result.input_ids.resize(total);
    result.token_type_ids.resize(total);
    result.attention_mask.resize(total);
    if (options.offsets) result.offsets.resize(2 * total);
    parallel_for(n, kFillGrain, threads_for(total * 32, options.num_threads), [&](size_t lo, size_t hi) {
        for (size_t i = lo; i < hi; ++i) {
            size_t p = static_cast<size_t>(result.row_starts[i]);
            const size_t row_end = static_cast<size_t>(result.row_starts[i + 1]);
            const Token* tokens = chunk_tokens[chunk_of[i]].data() + begin[i];
            auto put = [&](int32_t id, int32_t type, int32_t start, int32_t end) {
                result.input_ids[p] = id;
                result.token_type_ids[p] = type;
                result.attention_mask[p] = 1;
                if (options.offsets) {
                    result.offsets[2 * p] = start;
                    result.offsets[2 * p + 1] = end;
                }
                ++p;
            };
            if (specials) put(special_.cls, 0, 0, 0);
            for (size_t k = 0; k < keep_a[i]; ++k) put(tokens[k].id, 0, tokens[k].start, tokens[k].end);
            if (specials) put(special_.sep, 0, 0, 0);
            if (has_pair) {
                const Token* b = tokens + len_a[i];
                for (size_t k = 0; k < keep_b[i]; ++k) put(b[k].id, 1, b[k].start, b[k].end);
                if (specials) put(special_.sep, 1, 0, 0);
            }
            for (; p < row_end; ++p) {
                result.input_ids[p] = special_.pad;
                result.token_type_ids[p] = special_.pad_type_id;
                result.attention_mask[p] = 0;
                if (options.offsets) result.offsets[2 * p] = result.offsets[2 * p + 1] = 0;
            }
        }
    });
    return result;
}

}  // namespace fastbert
