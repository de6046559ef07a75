// Python bindings of the C++ tokenizer core: the module fastbert._C.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tokenizer.h"

namespace py = pybind11;
using fastbert::BatchEncoding;
using fastbert::EncodeOptions;
using fastbert::Tokenizer;

namespace {

// A sequence of str held alive (as a tuple) while its UTF-8 views are used without the GIL.
struct Texts {
    py::tuple owner;
    std::vector<std::string_view> views;
};

Texts utf8_views(const py::handle& seq, const char* what) {
    if (PyUnicode_Check(seq.ptr()) || !PySequence_Check(seq.ptr()))
        throw py::type_error(std::string(what) + " must be a list of str");
    Texts texts;
    texts.owner = py::reinterpret_steal<py::tuple>(PySequence_Tuple(seq.ptr()));
    if (!texts.owner) throw py::error_already_set();
    const Py_ssize_t n = PyTuple_GET_SIZE(texts.owner.ptr());
    texts.views.reserve(static_cast<size_t>(n));
    for (Py_ssize_t i = 0; i < n; ++i) {
        PyObject* item = PyTuple_GET_ITEM(texts.owner.ptr(), i);
        if (!PyUnicode_Check(item))
            throw py::type_error(std::string(what) + "[" + std::to_string(i) + "] must be str, not " +
                                 Py_TYPE(item)->tp_name);
        Py_ssize_t size = 0;
        const char* data = PyUnicode_AsUTF8AndSize(item, &size);
        if (!data) {
            PyErr_Clear();
            throw py::value_error(std::string(what) + "[" + std::to_string(i) +
                                  "] is not valid Unicode (it contains a lone surrogate code point, which cannot be "
                                  "encoded as UTF-8)");
        }
        texts.views.emplace_back(data, static_cast<size_t>(size));
    }
    return texts;
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

// Hands a vector to numpy without copying; the array owns it.
py::array_t<int64_t> to_numpy(std::vector<int64_t>&& values, std::vector<py::ssize_t> shape) {
    auto* heap = new std::vector<int64_t>(std::move(values));
    py::capsule owner(heap, [](void* p) { delete static_cast<std::vector<int64_t>*>(p); });
    return py::array_t<int64_t>(std::move(shape), heap->data(), owner);
}

py::list rows_as_lists(const BatchEncoding& enc, const std::vector<int64_t>& values) {
    py::list rows(enc.rows);
    for (size_t i = 0; i < enc.rows; ++i) {
        const int64_t b = enc.row_starts[i], e = enc.row_starts[i + 1];
        PyObject* row = PyList_New(e - b);
        if (!row) throw py::error_already_set();
        for (int64_t k = b; k < e; ++k) PyList_SET_ITEM(row, k - b, PyLong_FromLongLong(values[k]));
        PyList_SET_ITEM(rows.ptr(), i, row);
    }
    return rows;
}

py::list offsets_as_lists(const BatchEncoding& enc) {
    py::list rows(enc.rows);
    for (size_t i = 0; i < enc.rows; ++i) {
        const int64_t b = enc.row_starts[i], e = enc.row_starts[i + 1];
        PyObject* row = PyList_New(e - b);
        if (!row) throw py::error_already_set();
        for (int64_t k = b; k < e; ++k) {
            PyObject* pair = PyTuple_New(2);
            PyTuple_SET_ITEM(pair, 0, PyLong_FromLongLong(enc.offsets[2 * k]));
            PyTuple_SET_ITEM(pair, 1, PyLong_FromLongLong(enc.offsets[2 * k + 1]));
            PyList_SET_ITEM(row, k - b, pair);
        }
        PyList_SET_ITEM(rows.ptr(), i, row);
    }
    return rows;
}

py::dict encode_batch(const Tokenizer& tok, const py::object& text, const py::object& text_pair,
                      bool add_special_tokens, const std::string& truncation, std::optional<size_t> max_length,
                      const std::string& padding, std::optional<size_t> pad_to_multiple_of, bool return_offsets,
                      bool as_numpy, int num_threads) {
    Texts first = utf8_views(text, "text");
    std::optional<Texts> second;
    if (!text_pair.is_none()) {
        second = utf8_views(text_pair, "text_pair");
        if (second->views.size() != first.views.size())
            throw py::value_error("text and text_pair must have the same number of items (" +
                                  std::to_string(first.views.size()) + " != " +
                                  std::to_string(second->views.size()) + ")");
    }
    EncodeOptions options;
    options.add_special_tokens = add_special_tokens;
    options.truncation = parse_truncation(truncation);
    options.padding = parse_padding(padding);
    if ((options.truncation != fastbert::Truncation::kNone || options.padding == fastbert::Padding::kMaxLength) &&
        !max_length)
        throw py::value_error("max_length is required for truncation and for padding='max_length'");
    options.max_length = max_length.value_or(0);
    options.pad_to_multiple_of = pad_to_multiple_of.value_or(0);
    options.offsets = return_offsets;
    options.num_threads = num_threads > 0 ? num_threads : static_cast<int>(std::thread::hardware_concurrency());

    BatchEncoding enc;
    {
        py::gil_scoped_release release;
        enc = tok.encode_batch(first.views, second ? &second->views : nullptr, options);
    }
    py::dict out;
    if (as_numpy && (enc.width > 0 || enc.rows == 0)) {
        const auto rows = static_cast<py::ssize_t>(enc.rows), width = static_cast<py::ssize_t>(enc.width);
        out["input_ids"] = to_numpy(std::move(enc.input_ids), {rows, width});
        out["token_type_ids"] = to_numpy(std::move(enc.token_type_ids), {rows, width});
        out["attention_mask"] = to_numpy(std::move(enc.attention_mask), {rows, width});
        if (return_offsets) out["offset_mapping"] = to_numpy(std::move(enc.offsets), {rows, width, 2});
        return out;
    }
    out["input_ids"] = rows_as_lists(enc, enc.input_ids);
    out["token_type_ids"] = rows_as_lists(enc, enc.token_type_ids);
    out["attention_mask"] = rows_as_lists(enc, enc.attention_mask);
    if (return_offsets) out["offset_mapping"] = offsets_as_lists(enc);
    return out;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
    m.doc() = "fastbert's C++ BERT WordPiece tokenizer (use fastbert.BertTokenizer, which wraps it).";

    py::class_<Tokenizer>(m, "Tokenizer", "A BERT tokenizer: added tokens, BERT normalizer, pre-tokenizer, WordPiece.")
        .def(py::init([](const std::vector<std::pair<std::string, int32_t>>& vocab,
                         const std::vector<std::pair<std::string, int32_t>>& added_tokens, int32_t unk_id,
                         int32_t cls_id, int32_t sep_id, int32_t pad_id, int32_t pad_type_id, bool lowercase,
                         std::optional<bool> strip_accents, bool handle_chinese_chars, bool clean_text,
                         const std::string& continuing_subword_prefix, size_t max_input_chars_per_word) {
                 fastbert::SpecialIds ids;
                 ids.unk = unk_id;
                 ids.cls = cls_id;
                 ids.sep = sep_id;
                 ids.pad = pad_id;
                 ids.pad_type_id = pad_type_id;
                 const int strip = strip_accents ? (*strip_accents ? 1 : 0) : -1;
                 return new Tokenizer(vocab, added_tokens,
                                      fastbert::NormalizerOptions::bert(lowercase, strip, handle_chinese_chars, clean_text),
                                      ids, continuing_subword_prefix, max_input_chars_per_word);
             }),
             py::arg("vocab"), py::arg("added_tokens"), py::arg("unk_id"), py::arg("cls_id"), py::arg("sep_id"),
             py::arg("pad_id"), py::arg("pad_type_id") = 0, py::arg("lowercase") = true,
             py::arg("strip_accents") = py::none(), py::arg("handle_chinese_chars") = true,
             py::arg("clean_text") = true, py::arg("continuing_subword_prefix") = "##",
             py::arg("max_input_chars_per_word") = 100,
             "Builds a tokenizer.\n\n"
             "vocab: (token, id) pairs. added_tokens: (content, id) pairs matched verbatim in the raw text and kept\n"
             "whole ([CLS], [MASK], ...). unk_id must be a valid id (ValueError otherwise); cls/sep/pad ids may be -1\n"
             "when unused. strip_accents=None follows lowercase, as in BERT.")
        .def("encode_batch", &encode_batch, py::arg("text"), py::arg("text_pair") = py::none(),
             py::arg("add_special_tokens") = true, py::arg("truncation") = "do_not_truncate",
             py::arg("max_length") = py::none(), py::arg("padding") = "do_not_pad",
             py::arg("pad_to_multiple_of") = py::none(), py::arg("return_offsets") = false,
             py::arg("as_numpy") = false, py::arg("num_threads") = 0,
             "Encodes a list of str (and optional list of paired str) without holding the GIL, on up to\n"
             "num_threads threads (0: all hardware threads). truncation: 'do_not_truncate' | 'longest_first' |\n"
             "'only_first' | 'only_second'; padding: 'do_not_pad' | 'longest' | 'max_length'. max_length counts\n"
             "the special tokens. Returns a dict with input_ids, token_type_ids, attention_mask (and offset_mapping\n"
             "in characters): int64 arrays of shape (rows, width[, 2]) when as_numpy and all rows have the same\n"
             "length, else lists of lists. Raises TypeError for non-str items, ValueError for lone surrogates and\n"
             "when truncation cannot reach max_length.")
        .def("token_to_id",
             [](const Tokenizer& t, const std::string& token) -> std::optional<int32_t> {
                 const int32_t id = t.token_to_id(token);
                 if (id < 0) return std::nullopt;
                 return id;
             },
             py::arg("token"), "Id of a vocabulary or added token, or None.");
}
