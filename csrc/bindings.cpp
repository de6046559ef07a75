// Python bindings of the C++ tokenizer core: the module fastbert._C. Arguments arrive as plain Python objects and
// are checked here, so that a bad value gives one clear line (never a signature dump that repeats the inputs).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <iterator>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tokenizer.h"

namespace py = pybind11;
using fastbert::EncodeOptions;
using fastbert::Encodings;
using fastbert::Sequences;
using fastbert::Tokenizer;

namespace {

// Sequences whose UTF-8 views are used without the GIL; `owners` keeps the str objects alive.
struct Texts {
    std::vector<py::object> owners;
    Sequences seq;
};

// "text[3]" or "text[3][7]": where an item is, for error messages (built only when one is raised).
std::string where(const char* what, Py_ssize_t i, Py_ssize_t k = -1) {
    std::string s = std::string(what) + "[" + std::to_string(i) + "]";
    if (k >= 0) s += "[" + std::to_string(k) + "]";
    return s;
}

void add_piece(Texts& texts, PyObject* item, const char* what, Py_ssize_t i, Py_ssize_t k = -1) {
    if (!PyUnicode_Check(item))
        throw py::type_error(where(what, i, k) + " must be str, not " + Py_TYPE(item)->tp_name);
    Py_ssize_t size = 0;
    const char* data = PyUnicode_AsUTF8AndSize(item, &size);
    if (!data) {
        PyErr_Clear();
        throw py::value_error(where(what, i, k) +
                              " is not valid Unicode (it contains a lone surrogate code point, which cannot be "
                              "encoded as UTF-8)");
    }
    texts.seq.pieces.emplace_back(data, static_cast<size_t>(size));
}

// A tuple of the items of a sequence: it keeps them alive (and unchanged) while the GIL is released.
py::tuple as_tuple(PyObject* seq, const char* what, Py_ssize_t i, const char* expected) {
    if (PyUnicode_Check(seq) || !PySequence_Check(seq))
        throw py::type_error((i < 0 ? std::string(what) : where(what, i)) + " must be " + expected + ", not " +
                             Py_TYPE(seq)->tp_name);
    auto tuple = py::reinterpret_steal<py::tuple>(PySequence_Tuple(seq));
    if (!tuple) throw py::error_already_set();
    return tuple;
}

// A list of str, or with split_into_words a list of lists of str.
Texts read_texts(const py::handle& batch, const char* what, bool split_into_words) {
    Texts texts;
    texts.seq.split_into_words = split_into_words;
    py::tuple items = as_tuple(batch.ptr(), what, -1, split_into_words ? "a list of lists of str" : "a list of str");
    const Py_ssize_t n = PyTuple_GET_SIZE(items.ptr());
    texts.owners.push_back(items);
    if (!split_into_words) {
        texts.seq.pieces.reserve(static_cast<size_t>(n));
        for (Py_ssize_t i = 0; i < n; ++i) add_piece(texts, PyTuple_GET_ITEM(items.ptr(), i), what, i);
        return texts;
    }
    texts.owners.reserve(static_cast<size_t>(n) + 1);
    texts.seq.starts.reserve(static_cast<size_t>(n) + 1);
    texts.seq.starts.push_back(0);
    for (Py_ssize_t i = 0; i < n; ++i) {
        py::tuple words = as_tuple(PyTuple_GET_ITEM(items.ptr(), i), what, i, "a list of str (the words of a text)");
        for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(words.ptr()); ++k)
            add_piece(texts, PyTuple_GET_ITEM(words.ptr(), k), what, i, k);
        texts.owners.push_back(std::move(words));
        texts.seq.starts.push_back(texts.seq.pieces.size());
    }
    return texts;
}

// A non-negative integer argument (None gives `fallback`).
size_t to_size(const py::handle& value, const char* name, size_t fallback) {
    if (value.is_none()) return fallback;
    if (PyBool_Check(value.ptr()) || !PyLong_Check(value.ptr()))
        throw py::type_error(std::string(name) + " must be an int, not " + Py_TYPE(value.ptr())->tp_name);
    int overflow = 0;
    const long long v = PyLong_AsLongLongAndOverflow(value.ptr(), &overflow);
    if (overflow > 0 || v > static_cast<long long>(std::numeric_limits<uint32_t>::max()))
        throw py::value_error(std::string(name) + " is too large (at most 2**32 - 1)");
    if (overflow < 0 || v < 0)
        throw py::value_error(std::string(name) + " must be >= 0, got " + std::string(py::str(value)));
    return static_cast<size_t>(v);
}

fastbert::Truncation parse_truncation(const std::string& s) {
    if (s == "do_not_truncate") return fastbert::Truncation::kNone;
    if (s == "longest_first") return fastbert::Truncation::kLongestFirst;
    if (s == "only_first") return fastbert::Truncation::kOnlyFirst;
    if (s == "only_second") return fastbert::Truncation::kOnlySecond;
    throw py::value_error("unknown truncation strategy '" + s + "'");
}

fastbert::Padding parse_padding(const std::string& s) {
    if (s == "do_not_pad") return fastbert::Padding::kNone;
    if (s == "longest") return fastbert::Padding::kLongest;
    if (s == "max_length") return fastbert::Padding::kMaxLength;
    throw py::value_error("unknown padding strategy '" + s + "'");
}

fastbert::Side parse_side(const std::string& s, const char* name) {
    if (s == "right") return fastbert::Side::kRight;
    if (s == "left") return fastbert::Side::kLeft;
    throw py::value_error(std::string(name) + " must be 'right' or 'left', not '" + s + "'");
}

py::list rows_as_lists(const Encodings& enc, const std::vector<int64_t>& values) {
    py::list rows(enc.rows());
    for (size_t i = 0; i < enc.rows(); ++i) {
        const int64_t b = enc.row_start(i), e = b + static_cast<int64_t>(enc.row_length(i));
        PyObject* row = PyList_New(e - b);
        if (!row) throw py::error_already_set();
        for (int64_t k = b; k < e; ++k) PyList_SET_ITEM(row, k - b, PyLong_FromLongLong(values[k]));
        PyList_SET_ITEM(rows.ptr(), i, row);
    }
    return rows;
}

py::list offsets_as_lists(const Encodings& enc, const std::vector<int64_t>& offsets) {
    py::list rows(enc.rows());
    for (size_t i = 0; i < enc.rows(); ++i) {
        const int64_t b = enc.row_start(i), e = b + static_cast<int64_t>(enc.row_length(i));
        PyObject* row = PyList_New(e - b);
        if (!row) throw py::error_already_set();
        for (int64_t k = b; k < e; ++k) {
            PyObject* pair = PyTuple_New(2);
            PyTuple_SET_ITEM(pair, 0, PyLong_FromLongLong(offsets[2 * k]));
            PyTuple_SET_ITEM(pair, 1, PyLong_FromLongLong(offsets[2 * k + 1]));
            PyList_SET_ITEM(row, k - b, pair);
        }
        PyList_SET_ITEM(rows.ptr(), i, row);
    }
    return rows;
}

// The per-token fields an encode call can return, in the order of transformers' output.
struct Field {
    const char* name;
    int64_t* Encodings::Outputs::*slot;
    int width;  // values per token
};
constexpr Field kFields[] = {
    {"input_ids", &Encodings::Outputs::input_ids, 1},
    {"token_type_ids", &Encodings::Outputs::token_type_ids, 1},
    {"attention_mask", &Encodings::Outputs::attention_mask, 1},
    {"special_tokens_mask", &Encodings::Outputs::special_tokens_mask, 1},
    {"offset_mapping", &Encodings::Outputs::offsets, 2},
    {"word_ids", &Encodings::Outputs::word_ids, 1},
    {"sequence_ids", &Encodings::Outputs::sequence_ids, 1},
};

// Writes the named fields of `enc`: int64 arrays of shape (rows, width[, 2]) when as_numpy and the rows are
// rectangular, else lists of lists (offsets: lists of (start, end) tuples).
py::dict write_fields(const Encodings& enc, const std::vector<std::string>& names, bool as_numpy, int threads) {
    py::dict out;
    Encodings::Outputs dst;
    const bool arrays = as_numpy && enc.rectangular();
    const auto rows = static_cast<py::ssize_t>(enc.rows());
    const auto width = static_cast<py::ssize_t>(enc.rows() ? enc.row_length(0) : 0);
    std::vector<std::pair<const Field*, std::vector<int64_t>>> buffers;
    buffers.reserve(std::size(kFields));
    for (const Field& f : kFields) {
        if (std::find(names.begin(), names.end(), f.name) == names.end()) continue;
        if (arrays) {
            std::vector<py::ssize_t> shape{rows, width};
            if (f.width == 2 && width > 0) shape.push_back(2);  // transformers: empty rows give (rows, 0)
            py::array_t<int64_t> a(shape);
            dst.*(f.slot) = a.mutable_data();
            out[f.name] = a;
        } else {
            buffers.emplace_back(&f, std::vector<int64_t>(enc.total() * f.width));
            dst.*(f.slot) = buffers.back().second.data();
        }
    }
    {
        py::gil_scoped_release release;
        enc.write(dst, threads);
    }
    for (auto& [f, values] : buffers)
        out[f->name] = f->width == 2 ? offsets_as_lists(enc, values) : rows_as_lists(enc, values);
    return out;
}

// One field of row r (negative: from the end) as a new list; -1 word/sequence ids become None.
py::object row_list(const Encodings& e, Py_ssize_t r, const Field& field) {
    const auto rows = static_cast<Py_ssize_t>(e.rows());
    if (r < 0) r += rows;
    if (r < 0 || r >= rows) throw py::index_error("row index out of range (" + std::to_string(rows) + " rows)");
    const size_t n = e.row_length(static_cast<size_t>(r));
    std::vector<int64_t> values(n * field.width);
    Encodings::Outputs dst;
    dst.*(field.slot) = values.data();
    e.write_row(static_cast<size_t>(r), dst);
    const bool optional =
        field.slot == &Encodings::Outputs::word_ids || field.slot == &Encodings::Outputs::sequence_ids;
    // Word and sequence ids are small: hand out shared int objects instead of making one per token.
    static PyObject* small[1024] = {};
    auto as_int = [](int64_t v) -> PyObject* {
        if (v >= 0 && v < 1024) {
            if (!small[v]) small[v] = PyLong_FromLongLong(v);
            return Py_NewRef(small[v]);
        }
        return PyLong_FromLongLong(v);
    };
    PyObject* list = PyList_New(static_cast<Py_ssize_t>(n));
    if (!list) throw py::error_already_set();
    for (size_t k = 0; k < n; ++k) {
        PyObject* item;
        if (field.width == 2) {
            item = PyTuple_New(2);
            PyTuple_SET_ITEM(item, 0, as_int(values[2 * k]));
            PyTuple_SET_ITEM(item, 1, as_int(values[2 * k + 1]));
        } else if (optional && values[k] < 0) {
            item = Py_NewRef(Py_None);
        } else {
            item = as_int(values[k]);
        }
        PyList_SET_ITEM(list, static_cast<Py_ssize_t>(k), item);
    }
    return py::reinterpret_steal<py::object>(list);
}

py::object row_field(const Encodings& e, Py_ssize_t r, const std::string& name) {
    for (const auto& f : kFields)
        if (name == f.name) return row_list(e, r, f);
    throw py::value_error("unknown field '" + name + "'");
}

std::pair<py::dict, std::shared_ptr<Encodings>> encode_batch(
    const Tokenizer& tok, const py::object& text, const py::object& text_pair, bool is_split_into_words,
    bool add_special_tokens, const std::string& truncation, const py::object& max_length, const py::object& stride,
    const std::string& truncation_side, bool return_overflowing_tokens, const std::string& padding,
    const std::string& padding_side, const py::object& pad_to_multiple_of, bool split_special_tokens,
    const std::vector<std::string>& fields, bool return_length, bool as_numpy, const py::object& num_threads) {
    EncodeOptions options;
    options.add_special_tokens = add_special_tokens;
    options.truncation = parse_truncation(truncation);
    options.padding = parse_padding(padding);
    options.truncation_side = parse_side(truncation_side, "truncation_side");
    options.padding_side = parse_side(padding_side, "padding_side");
    options.overflowing = return_overflowing_tokens;
    options.split_special_tokens = split_special_tokens;
    if ((options.truncation != fastbert::Truncation::kNone || options.padding == fastbert::Padding::kMaxLength) &&
        max_length.is_none())
        throw py::value_error("max_length is required for truncation and for padding='max_length'");
    options.max_length = to_size(max_length, "max_length", 0);
    options.stride = to_size(stride, "stride", 0);
    options.pad_to_multiple_of = to_size(pad_to_multiple_of, "pad_to_multiple_of", 0);
    const size_t threads = to_size(num_threads, "num_threads", 0);
    options.num_threads = threads > 0 ? static_cast<int>(std::min<size_t>(threads, 1024))
                                      : static_cast<int>(std::thread::hardware_concurrency());

    Texts first = read_texts(text, "text", is_split_into_words);
    std::optional<Texts> second;
    if (!text_pair.is_none()) {
        second = read_texts(text_pair, "text_pair", is_split_into_words);
        if (second->seq.size() != first.seq.size())
            throw py::value_error("text and text_pair must have the same number of items (" +
                                  std::to_string(first.seq.size()) + " != " + std::to_string(second->seq.size()) +
                                  ")");
    }
    std::shared_ptr<Encodings> enc;
    {
        py::gil_scoped_release release;
        enc = tok.encode_batch(first.seq, second ? &second->seq : nullptr, options);
    }
    py::dict out = write_fields(*enc, fields, as_numpy, options.num_threads);
    auto per_row = [&](auto value_of) -> py::object {
        std::vector<int64_t> values(enc->rows());
        for (size_t r = 0; r < enc->rows(); ++r) values[r] = value_of(r);
        if (as_numpy) return py::array_t<int64_t>(static_cast<py::ssize_t>(values.size()), values.data());
        return py::cast(values);
    };
    if (return_length) out["length"] = per_row([&](size_t r) { return static_cast<int64_t>(enc->row_length(r)); });
    if (return_overflowing_tokens)
        out["overflow_to_sample_mapping"] = per_row([&](size_t r) { return static_cast<int64_t>(enc->sample_of(r)); });
    return {out, enc};
}

}  // namespace

PYBIND11_MODULE(_C, m) {
    m.doc() = "fastbert's C++ BERT WordPiece tokenizer (use fastbert.BertTokenizer, which wraps it).";

    py::class_<Encodings, std::shared_ptr<Encodings>>(
        m, "Encodings",
        "The rows of one encode_batch call, kept so that per-token details (word ids, sequence ids, offsets) can "
        "be read after the call.")
        .def_property_readonly("rows", &Encodings::rows, "Number of rows (inputs, or windows with overflow).")
        .def_property_readonly("n_sequences", [](const Encodings& e) { return e.has_pair() ? 2 : 1; },
                               "2 for pairs of sequences, else 1.")
        .def("row", &row_field, py::arg("row"), py::arg("field"),
             "One field of one row (negative: from the end) as a new list: input_ids, token_type_ids,\n"
             "attention_mask, special_tokens_mask, offset_mapping ((start, end) tuples, in characters), word_ids or\n"
             "sequence_ids (None for special tokens and padding, as in transformers).")
        .def("word_ids", [](const Encodings& e, Py_ssize_t r) { return row_list(e, r, kFields[5]); }, py::arg("row"),
             "row(row, 'word_ids'), without the field lookup.")
        .def("sequence_ids", [](const Encodings& e, Py_ssize_t r) { return row_list(e, r, kFields[6]); },
             py::arg("row"), "row(row, 'sequence_ids'), without the field lookup.")
        .def("row_length", &Encodings::row_length, py::arg("row"), "Tokens in a row, padding included.")
        .def("sample_of", &Encodings::sample_of, py::arg("row"), "The input a row comes from.");

    py::class_<Tokenizer>(m, "Tokenizer", "A BERT tokenizer: added tokens, BERT normalizer, pre-tokenizer, WordPiece.")
        .def(py::init([](const std::vector<std::pair<std::string, int32_t>>& vocab,
                         const std::vector<std::tuple<std::string, int32_t, bool, bool, bool, bool, bool>>& added_tokens,
                         int32_t unk_id, int32_t cls_id, int32_t sep_id, int32_t pad_id, int32_t pad_type_id,
                         bool lowercase, std::optional<bool> strip_accents, bool handle_chinese_chars, bool clean_text,
                         const std::string& continuing_subword_prefix, size_t max_input_chars_per_word,
                         bool double_sep) {
                 fastbert::SpecialIds ids;
                 ids.double_sep = double_sep;
                 ids.unk = unk_id;
                 ids.cls = cls_id;
                 ids.sep = sep_id;
                 ids.pad = pad_id;
                 ids.pad_type_id = pad_type_id;
                 std::vector<fastbert::AddedTokenSpec> added;
                 for (const auto& [content, id, single_word, lstrip, rstrip, normalized, special] : added_tokens)
                     added.push_back({content, id, single_word, lstrip, rstrip, normalized, special});
                 const int strip = strip_accents ? (*strip_accents ? 1 : 0) : -1;
                 return new Tokenizer(vocab, added,
                                      fastbert::NormalizerOptions::bert(lowercase, strip, handle_chinese_chars, clean_text),
                                      ids, continuing_subword_prefix, max_input_chars_per_word);
             }),
             py::arg("vocab"), py::arg("added_tokens"), py::arg("unk_id"), py::arg("cls_id"), py::arg("sep_id"),
             py::arg("pad_id"), py::arg("pad_type_id") = 0, py::arg("lowercase") = true,
             py::arg("strip_accents") = py::none(), py::arg("handle_chinese_chars") = true,
             py::arg("clean_text") = true, py::arg("continuing_subword_prefix") = "##",
             py::arg("max_input_chars_per_word") = 100, py::arg("double_sep") = false,
             "Builds a tokenizer.\n\n"
             "vocab: (token, id) pairs. added_tokens: (content, id, single_word, lstrip, rstrip, normalized, special)\n"
             "tuples, found in the text and kept whole ([CLS], [MASK], ...): normalized=False ones in the raw text,\n"
             "the others (by their normalized content) in the normalized text. unk_id must be a valid id (ValueError\n"
             "otherwise); cls/sep/pad ids may be -1 when unused. strip_accents=None follows lowercase, as in BERT.\n"
             "double_sep: pairs as RoBERTa/MPNet lay them out, cls A sep sep B sep, all of type 0 (default: BERT's\n"
             "cls A sep B sep, B of type 1).")
        .def("encode_batch", &encode_batch, py::arg("text"), py::arg("text_pair") = py::none(),
             py::arg("is_split_into_words") = false, py::arg("add_special_tokens") = true,
             py::arg("truncation") = "do_not_truncate", py::arg("max_length") = py::none(), py::arg("stride") = 0,
             py::arg("truncation_side") = "right", py::arg("return_overflowing_tokens") = false,
             py::arg("padding") = "do_not_pad", py::arg("padding_side") = "right",
             py::arg("pad_to_multiple_of") = py::none(), py::arg("split_special_tokens") = false,
             py::arg("fields") = std::vector<std::string>{"input_ids", "token_type_ids", "attention_mask"},
             py::arg("return_length") = false, py::arg("as_numpy") = false, py::arg("num_threads") = 0,
             "Encodes a batch without holding the GIL, on up to num_threads threads (0: all hardware threads).\n\n"
             "text (and text_pair): lists of str, or with is_split_into_words lists of lists of words. truncation:\n"
             "'do_not_truncate' | 'longest_first' | 'only_first' | 'only_second' (max_length counts the special\n"
             "tokens; stride: overlap of the overflowing windows, kept as further rows when\n"
             "return_overflowing_tokens); padding: 'do_not_pad' | 'longest' | 'max_length'; sides: 'right' |\n"
             "'left'. fields: which of input_ids, token_type_ids, attention_mask, special_tokens_mask,\n"
             "offset_mapping (characters), word_ids, sequence_ids to return. Returns (dict, Encodings): the dict\n"
             "holds int64 arrays of shape (rows, width[, 2]) when as_numpy and all rows have the same length, else\n"
             "lists of lists; plus length and overflow_to_sample_mapping (one value per row) when asked. Raises\n"
             "TypeError for non-str items, ValueError for lone surrogates, negative numbers, and truncation that\n"
             "cannot reach max_length.")
        .def("token_to_id",
             [](const Tokenizer& t, const std::string& token) -> std::optional<int32_t> {
                 const int32_t id = t.token_to_id(token);
                 if (id < 0) return std::nullopt;
                 return id;
             },
             py::arg("token"), "Id of a vocabulary or added token, or None.")
        .def("normalize", &Tokenizer::normalize, py::arg("text"), "The text after the BERT normalizer.");
}
