// BERT normalizer: clean text -> CJK spacing -> strip accents -> lowercase, one character at a time.
//
// Mirrors Hugging Face's BertNormalizer. Every output character remembers the index (in characters) of the
// input character it came from, which is how token offsets are mapped back to the original text.
#pragma once
#include <algorithm>
#include <cstdint>
#include <string_view>
#include <vector>

#include "unicode.h"

namespace fastbert {

struct NormalizerOptions {
    bool clean_text = true;            // drop NUL, U+FFFD, Cc/Cf/Co (but TAB/LF/CR); whitespace -> ' '
    bool handle_chinese_chars = true;  // put spaces around CJK ideographs
    bool strip_accents = true;         // NFD, then drop nonspacing marks (BERT: defaults to `lowercase`)
    bool lowercase = true;             // full Unicode lowercase mapping

    // BERT's defaults: strip_accents follows lowercase unless set explicitly (-1 = unset, 0 = false, 1 = true).
    static NormalizerOptions bert(bool lowercase, int strip_accents, bool handle_chinese_chars, bool clean_text) {
        NormalizerOptions o;
        o.lowercase = lowercase;
        o.strip_accents = strip_accents < 0 ? lowercase : strip_accents != 0;
        o.handle_chinese_chars = handle_chinese_chars;
        o.clean_text = clean_text;
        return o;
    }
};

class BertNormalizer {
  public:
    explicit BertNormalizer(const NormalizerOptions& options) : options_(options) {
        using namespace unicode_tables;
        mapping_ = options.lowercase ? (options.strip_accents ? &CharRecord::lower_strip : &CharRecord::lower)
                                     : (options.strip_accents ? &CharRecord::strip : nullptr);
        for (uint32_t c = 0; c < 128; ++c) {
            const CharRecord& r = unicode::record(c);
            ascii_[c] = static_cast<char>(c);
            if (options.clean_text && (r.flags & kFlagRemove)) {
                ascii_[c] = 0;  // marker: removed (NUL itself is always removed by clean_text)
                ascii_removed_[c] = true;
                continue;
            }
            if (options.clean_text && (r.flags & kFlagSpace)) ascii_[c] = ' ';
            else if (options.lowercase && c >= 'A' && c <= 'Z') ascii_[c] = static_cast<char>(c + 32);
        }
    }

    const NormalizerOptions& options() const { return options_; }

    // Normalizes `text`, whose first character has index `first_char` in the whole input. For every output
    // character calls sink(const char* utf8, size_t bytes, int32_t source_char). Returns the index after text.
    //
    // With strip_accents, NFD reorders combining marks across characters (by canonical combining class), so
    // characters whose decomposition holds a non-starter wait in `pending` until the next starter.
    template <class Sink>
    int32_t run(std::string_view text, int32_t first_char, Sink&& sink) const {
        using namespace unicode_tables;
        const auto* p = reinterpret_cast<const unsigned char*>(text.data());
        const auto* end = p + text.size();
        std::vector<Pending> pending;
        std::vector<int32_t> sources;
        auto flush = [&]() {
            // As in Hugging Face's NFD alignment: characters move together with their "first of a decomposition"
            // mark. In the new order, each first character takes the next input character (inputs are consumed
            // in order) and each further character of a decomposition shares the last consumed one.
            sources.clear();
            for (const Pending& d : pending)
                if (!d.inserted) sources.push_back(d.source);
            int32_t last = pending.front().source;
            std::stable_sort(pending.begin(), pending.end(),
                             [](const Pending& a, const Pending& b) { return a.ccc < b.ccc; });
            size_t next = 0;
            for (Pending& d : pending) {
                if (!d.inserted) last = sources[next++];
                d.source = last;
            }
            for (const Pending& d : pending) emit_decomposed(d.cp, d.source, sink);
            pending.clear();
        };
        int32_t ci = first_char;
        for (; p < end; ++ci) {
            const unsigned char b = *p;
            if (b < 0x80) {  // ASCII fast path: one table lookup
                ++p;
                if (!ascii_removed_[b]) {
                    if (!pending.empty()) flush();
                    sink(&ascii_[b], 1, ci);
                }
                continue;
            }
            const size_t n = unicode::utf8_length(b);
            const uint32_t cp = unicode::decode(p, n);
            const char* src = reinterpret_cast<const char*>(p);
            p += n;
            const CharRecord& r = unicode::record(cp);
            if (options_.clean_text) {
                if (r.flags & kFlagRemove) continue;
                if (r.flags & kFlagSpace) {
                    if (!pending.empty()) flush();
                    sink(" ", 1, ci);
                    continue;
                }
            }
            const bool cjk = options_.handle_chinese_chars && (r.flags & kFlagCjk);
            if (cjk) {
                if (!pending.empty()) flush();
                sink(" ", 1, ci);
            }
            if (options_.strip_accents && (r.flags & kFlagReorder)) {
                bool inserted = false;  // false for the first character of the decomposition
                for_each_char(r.nfd, cp, [&](uint32_t d) {
                    const uint8_t ccc = unicode::record(d).ccc;
                    if (ccc == 0) {
                        if (!pending.empty()) flush();
                        emit_decomposed(d, ci, sink);
                    } else {
                        pending.push_back(Pending{d, ccc, inserted, ci});
                    }
                    inserted = true;
                });
                continue;
            }
            if (!pending.empty()) flush();
            const uint32_t m = mapping_ ? r.*mapping_ : kIdentity;
            if (m == kIdentity) {
                sink(src, n, ci);
            } else {
                const char* q = reinterpret_cast<const char*>(kPool) + (m >> 8);
                const char* qend = q + (m & 0xFF);
                while (q < qend) {
                    const size_t k = unicode::utf8_length(static_cast<unsigned char>(*q));
                    sink(q, k, ci);
                    q += k;
                }
            }
            if (cjk) sink(" ", 1, ci);
        }
        if (!pending.empty()) flush();
        return ci;
    }

  private:
    struct Pending {
        uint32_t cp;
        uint8_t ccc;
        bool inserted;  // not the first character of its decomposition
        int32_t source;
    };

    // Calls f(code point) for each character of `mapping` (kIdentity: `cp` itself).
    template <class F>
    static void for_each_char(uint32_t mapping, uint32_t cp, F&& f) {
        if (mapping == unicode_tables::kIdentity) {
            f(cp);
            return;
        }
        const auto* q = unicode_tables::kPool + (mapping >> 8);
        const auto* qend = q + (mapping & 0xFF);
        while (q < qend) {
            const size_t k = unicode::utf8_length(*q);
            f(unicode::decode(q, k));
            q += k;
        }
    }

    // Emits one character of an NFD decomposition: dropped if a nonspacing mark, else lowercased if asked.
    template <class Sink>
    void emit_decomposed(uint32_t d, int32_t source, Sink& sink) const {
        const unicode::CharRecord& r = unicode::record(d);
        if (r.flags & unicode_tables::kFlagMn) return;
        for_each_char(options_.lowercase ? r.lower : unicode_tables::kIdentity, d, [&](uint32_t c) {
            char buf[4];
            sink(buf, unicode::encode(c, buf), source);
        });
    }

    NormalizerOptions options_;
    uint32_t unicode_tables::CharRecord::*mapping_ = nullptr;  // which mapping of a record applies
    char ascii_[128] = {};
    bool ascii_removed_[128] = {};
};

}  // namespace fastbert
