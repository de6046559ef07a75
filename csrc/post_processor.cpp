#include "post_processor.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>

namespace fastbert {

void truncate_windows(size_t n, size_t max_len, size_t stride, Side side, std::vector<Span>& out) {
    out.clear();
    if (max_len >= n) {
        out.push_back(Span{0, static_cast<uint32_t>(n)});
        return;
    }
    if (max_len == 0) {
        out.push_back(Span{0, 0});
        out.push_back(Span{0, static_cast<uint32_t>(n)});
        return;
    }
    if (stride >= max_len)
        throw std::invalid_argument("stride=" + std::to_string(stride) + " must be smaller than the " +
                                    std::to_string(max_len) +
                                    " tokens a truncated sequence keeps here (max_length minus the special tokens, "
                                    "and minus the other sequence of a pair)");
    const size_t step = max_len - stride;
    if (side == Side::kRight) {
        for (size_t begin = 0;; begin += step) {
            const size_t end = std::min(begin + max_len, n);
            out.push_back(Span{static_cast<uint32_t>(begin), static_cast<uint32_t>(end)});
            if (end == n) break;
        }
    } else {
        for (size_t last = n;; last = last > step ? last - step : 0) {  // `last`: one past the window's end
            const size_t begin = last > max_len ? last - max_len : 0;
            out.push_back(Span{static_cast<uint32_t>(begin), static_cast<uint32_t>(last)});
            if (begin == 0 || last <= step) break;
        }
    }
}

void truncate_sequences(size_t la, size_t lb, bool has_pair, const TruncationParams& params, std::vector<Span>& a,
                        std::vector<Span>& b) {
    const size_t max_length = params.max_length;
    auto whole = [](size_t n, std::vector<Span>& out) {
        out.assign(1, Span{0, static_cast<uint32_t>(n)});
    };
    whole(la, a);
    whole(lb, b);
    if (params.strategy == Truncation::kNone) return;
    if (max_length == 0) {
        truncate_windows(la, 0, params.stride, params.side, a);
        if (has_pair) truncate_windows(lb, 0, params.stride, params.side, b);
        return;
    }
    if (la + lb <= max_length) return;
    const size_t to_remove = la + lb - max_length;
    switch (params.strategy) {
        case Truncation::kLongestFirst: {
            if (!has_pair) {
                truncate_windows(la, max_length, params.stride, params.side, a);
                return;
            }
            size_t n1 = la, n2 = lb;
            const bool swap = n1 > n2;
            if (swap) std::swap(n1, n2);
            n2 = n1 > max_length ? n1 : std::max(n1, max_length - n1);
            if (n1 + n2 > max_length) {
                n1 = max_length / 2;
                n2 = n1 + max_length % 2;
            }
            if (swap) std::swap(n1, n2);
            truncate_windows(la, n1, params.stride, params.side, a);
            truncate_windows(lb, n2, params.stride, params.side, b);
            return;
        }
        case Truncation::kOnlyFirst:
        case Truncation::kOnlySecond: {
            const bool first = params.strategy == Truncation::kOnlyFirst;
            if (!first && !has_pair)
                throw std::invalid_argument("truncation='only_second' needs pairs of texts (text_pair)");
            const size_t target = first ? la : lb;
            if (target <= to_remove)
                throw std::invalid_argument(
                    std::string("truncation='") + (first ? "only_first" : "only_second") + "' cannot fit " +
                    std::to_string(la + lb) + " tokens into max_length: the " + (first ? "first" : "second") +
                    " sequence has " + std::to_string(target) + " tokens but " + std::to_string(to_remove) +
                    " must go (use truncation='longest_first' or a larger max_length)");
            truncate_windows(target, target - to_remove, params.stride, params.side, first ? a : b);
            return;
        }
        case Truncation::kNone:
            return;
    }
}

}  // namespace fastbert
