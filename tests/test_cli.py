"""`fastbert encode`: results, every user mistake as one line on stderr, atomic outputs, one row per input line."""
import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sentence_folders import plain_minilm, tiny_model_folder

import fastbert
from fastbert.cli import main
from fastbert.embeddings.textfiles import split_lines

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Characters that Python's str.splitlines (and text-mode reading) treat as line breaks but fastbert does not.
NOT_LINE_BREAKS = ["\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A small random sentence-transformers folder (fast to load and run)."""
    return tiny_model_folder(tmp_path_factory.mktemp("tiny"))


def run_cli(*args, stdin=b"", timeout=120, **kwargs):
    """``python -m fastbert ARGS`` in a subprocess -> CompletedProcess (bytes)."""
    return subprocess.run([sys.executable, "-m", "fastbert", *args], input=stdin, capture_output=True,
                          timeout=timeout, cwd=REPO, **kwargs)


def one_error_line(stderr: bytes | str) -> str:
    """The single line a mistake prints (asserting there is exactly one and no traceback)."""
    text = stderr.decode() if isinstance(stderr, bytes) else stderr
    lines = text.splitlines()
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


# ---------------------------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------------------------

def test_encode_matches_the_api_in_every_output_form(tmp_path, capsys):
    """JSON lines on stdout, .jsonl and .NPY files: the SentenceEncoder's float32 embeddings, in input order."""
    texts = ["A long sentence about encoders, with several words in it.", "Hi", "", "Mid-length text here."]
    expected = fastbert.SentenceEncoder(device="cpu").encode(texts)

    assert main(["encode", *texts]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["text"] for r in rows] == texts
    np.testing.assert_array_equal(np.array([r["embedding"] for r in rows], dtype=np.float32), expected)

    src = tmp_path / "texts.txt"
    src.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    assert main(["encode", "-i", str(src), "-o", str(tmp_path / "out.NPY"), "--batch-size", "2"]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "out.NPY"), expected, atol=1e-6, rtol=0)
    assert main(["encode", "-i", str(src), "-o", str(tmp_path / "out.JSONL")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "out.JSONL").read_text(encoding="utf-8").splitlines()]
    np.testing.assert_allclose(np.array([r["embedding"] for r in rows], dtype=np.float32), expected, atol=1e-6)
    err = capsys.readouterr().err
    assert "wrote 4 embeddings of size 384" in err and not list(tmp_path.glob(".*.part"))


def test_truncation_is_reported_or_refused(tmp_path, capsys):
    long = "word " * 400
    src = tmp_path / "in.txt"
    src.write_text(f"short\n{long}\nshort again\n{long}\n", encoding="utf-8")
    assert main(["encode", "-i", str(src), "-o", str(tmp_path / "o.npy")]) == 0
    assert "2 of 4 texts were longer than 256 tokens and were truncated" in capsys.readouterr().err
    assert main(["encode", "-i", str(src), "-o", str(tmp_path / "p.npy"), "--no-truncate"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "2 of 4 texts are longer than 256 tokens (first: line 2, 402 tokens)" in line
    assert not (tmp_path / "p.npy").exists()
    assert main(["encode", "-i", str(src), "-o", str(tmp_path / "q.npy"), "--max-length", "512", "--no-truncate"]) == 0


def test_prompt_options(tiny, capsys):
    assert main(["encode", "--model", tiny, "--prompt", "query: ", "x"]) == 0
    with_prompt = json.loads(capsys.readouterr().out)["embedding"]
    assert main(["encode", "--model", tiny, "query: x"]) == 0
    assert json.loads(capsys.readouterr().out)["embedding"] == with_prompt
    assert main(["encode", "--model", tiny, "--prompt-name", "query", "x"]) == 1
    assert "prompt name 'query' is not one of the model's prompts []" in one_error_line(capsys.readouterr().err)


def test_progress_bar_counts_texts_for_stdin_on_a_terminal(tiny, monkeypatch, capsys):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"a\nb\nc\n")))
    assert main(["encode", "--model", tiny, "--batch-size", "2"]) == 0
    assert "3/3" in terminal.getvalue() and "text" in terminal.getvalue()
    assert len(capsys.readouterr().out.splitlines()) == 3


# ---------------------------------------------------------------------------------------------------------------
# Mistakes: one line on stderr, no traceback, nonzero exit
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("preset", [None, "ACTIVE"])
def test_openmp_threads_sleep_unless_the_user_says_otherwise(preset):
    """The CLI sets OMP_WAIT_POLICY=PASSIVE before torch loads (spinning waits cost 2.5x on a loaded 2-core
    machine); a user's own setting wins."""
    script = ("import os, sys; from fastbert.cli import main; main([]); "
              "print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if preset:
        env["OMP_WAIT_POLICY"] = preset
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, env=env,
                          timeout=60)
    assert proc.stdout.split()[-2:] == [preset or "PASSIVE", "False"], proc.stdout + proc.stderr


def test_help_version_and_argument_errors_do_not_import_torch():
    """Bare `fastbert` prints help; --version; every argument mistake is one line with exit 2 -- all without
    importing torch (so they answer at once)."""
    script = r"""
import contextlib, io, json, sys
from fastbert.cli import main
cases = [[], ["--version"], ["encode", "--batch-size", "0", "x"], ["encode", "--max-length", "0", "x"],
         ["encode", "--max-length", "-1", "x"], ["encode", "--device", "gpu", "x"], ["encode", "--device", "mps", "x"],
         ["encode", "--device", "meta", "x"], ["encode", "--max-batch-tokens", "abc", "x"], ["nope"],
         ["encode", "-i", "f.txt", "text"]]
results = []
for argv in cases:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
    results.append([argv, code, out.getvalue(), err.getvalue()])
print(json.dumps({"results": results, "torch": "torch" in sys.modules}))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=60)
    report = json.loads(proc.stdout)
    assert not report["torch"]
    results = {" ".join(argv): (code, out, err) for argv, code, out, err in report["results"]}
    code, out, _ = results[""]
    assert code == 0 and "usage: fastbert" in out and "encode" in out
    assert results["--version"][:2] == (0, f"fastbert {fastbert.__version__}\n")
    expected = {
        "encode --batch-size 0 x": "argument --batch-size: must be a positive integer, got 0",
        "encode --max-length 0 x": "argument --max-length: must be a positive integer, got 0",
        "encode --max-length -1 x": "argument --max-length: must be a positive integer, got -1",
        "encode --device gpu x": "argument --device: unknown device 'gpu'; use cpu, cuda or cuda:N",
        "encode --device mps x": "unknown device 'mps'",
        "encode --device meta x": "unknown device 'meta'",
        "encode --max-batch-tokens abc x": "expected a positive integer, got 'abc'",
        "nope": "invalid choice: 'nope'",
        "encode -i f.txt text": "give texts as arguments or with --input, not both",
    }
    for argv, message in expected.items():
        code, out, err = results[argv]
        assert code == 2 and out == "", argv
        assert message in one_error_line(err) and one_error_line(err).startswith("fastbert"), argv


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_subprocess():
    proc = run_cli("encode", "--device", "cuda", "text")
    assert proc.returncode == 1
    assert "device 'cuda' requested but CUDA is not available on this machine" in one_error_line(proc.stderr)


def test_corrupt_weights_subprocess(tmp_path):
    folder = tmp_path / "model"
    plain_minilm(folder)
    weights = folder / "model.safetensors"
    data = open(os.path.realpath(weights), "rb").read()
    weights.unlink()
    weights.write_bytes(data[: len(data) // 2])  # truncated
    proc = run_cli("encode", "--model", str(folder), "text")
    assert proc.returncode == 1 and one_error_line(proc.stderr).startswith("fastbert encode: error: ")


def test_closed_stdout_and_bad_stdin_subprocess(tiny):
    proc = subprocess.run([sys.executable, "-m", "fastbert", "encode", "--model", tiny, "text"], cwd=REPO,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120,
                          preexec_fn=lambda: os.close(1))
    assert proc.returncode == 1
    assert "stdout is closed; write to a file with -o" in one_error_line(proc.stderr)
    proc = run_cli("encode", "--model", tiny, stdin=b"fine\nalso fine\r\nnot \xc3\x28 fine\n")
    assert proc.returncode == 1
    assert one_error_line(proc.stderr) == ("fastbert encode: error: stdin line 3 is not valid UTF-8 (byte 0xc3 at "
                                           "byte 5 of the line)")


def test_mistakes_in_process(tmp_path, tiny, capsys, monkeypatch):
    """Each mistake: exit 1, one line naming the problem. Output paths are checked before the model is read."""
    texts_file = tmp_path / "in.txt"
    texts_file.write_text("one\ntwo\n", encoding="utf-8")
    missing_model = str(tmp_path / "no-model")
    cases = {
        ("encode", "--model", "sentence-transformers/all-MiniLM-L6-v2", "x"):
            "model folder 'sentence-transformers/all-MiniLM-L6-v2' does not exist; fastbert reads only local model "
            "folders",
        ("encode", "--model", str(texts_file), "x"): "is not a folder",
        ("encode", "--model", missing_model, "-o", str(tmp_path / "missing" / "out.npy"), "x"):
            f"folder '{tmp_path / 'missing'}' does not exist",
        ("encode", "--model", missing_model, "-o", str(tmp_path / "out.npz"), "x"):
            "unknown output extension '.npz'; use NAME.npy (float32 array [N, D]) or NAME.jsonl",
        ("encode", "--model", missing_model, "-o", str(tmp_path / "out"), "x"): "unknown output extension '(none)'",
        ("encode", "--model", missing_model, "-o", str(tmp_path), "x"): "unknown output extension",
        ("encode", "--model", tiny, "--max-length", "100000", "x"):
            "max_seq_length must be an integer from 2 ([CLS] + [SEP]) to the model's max_position_embeddings 128",
        ("encode", "--model", tiny, "-i", str(tmp_path / "nope.txt")): "cannot read input file",
        ("encode", "--model", tiny, "--dtype", "float16", "--pooling", "max", "\udcff"): "argument text 1 is not valid",
    }
    for argv, message in cases.items():
        assert main(list(argv)) == 1, argv
        assert message in one_error_line(capsys.readouterr().err), argv

    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok\n\xff\xfe\n")
    assert main(["encode", "--model", tiny, "-i", str(bad)]) == 1
    assert f"'{bad}' line 2 is not valid UTF-8 (byte 0xff at byte 1 of the line)" in one_error_line(
        capsys.readouterr().err)
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    assert main(["encode", "--model", tiny, "-i", str(empty)]) == 1
    assert "is empty: no texts to embed" in one_error_line(capsys.readouterr().err)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    assert main(["encode", "--model", tiny]) == 1
    assert "stdin is empty" in one_error_line(capsys.readouterr().err)


def test_library_errors_are_one_line(tmp_path, tiny, capsys):
    """A bad folder setting raised deep in the library reaches the user as one line naming file and setting."""
    config = os.path.join(tiny, "1_Pooling", "config.json")
    original = open(config).read()
    try:
        with open(config, "w") as f:
            json.dump({"embedding_dimension": 32, "pooling_mode": "median"}, f)
        assert main(["encode", "--model", tiny, "x"]) == 1
        assert f"{config}: pooling_mode 'median' is not one of" in one_error_line(capsys.readouterr().err)
        with open(config, "w") as f:
            f.write("{\n  not json\n")
        assert main(["encode", "--model", tiny, "x"]) == 1
        assert f"{config} is not valid JSON" in one_error_line(capsys.readouterr().err)
    finally:
        with open(config, "w") as f:
            f.write(original)


# ---------------------------------------------------------------------------------------------------------------
# Atomic outputs and signals
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sig, code, word", [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")])
def test_signal_while_writing_keeps_the_old_output(tmp_path, tmp_path_factory, sig, code, word):
    """Killed mid-write: the previous output survives untouched, no partial file remains, one line, exit code.
    (A random model with a 1024-wide Dense layer makes writing the longest phase, so the signal lands in it.)"""
    wide = tiny_model_folder(tmp_path_factory.mktemp("wide"), dense_out=1024)
    src = tmp_path / "in.txt"
    src.write_text("".join(f"line {i} of an input\n" for i in range(8000)), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    out.write_text("GOOD\n")
    proc = subprocess.Popen([sys.executable, "-m", "fastbert", "encode", "--model", wide, "-i", str(src), "-o",
                             str(out), "--batch-size", "512"], cwd=REPO, stderr=subprocess.PIPE,
                            # a shell's background job (``cmd &``) inherits SIGINT ignored: give the child Ctrl-C back
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 240
    while not list(tmp_path.glob(".out.jsonl.*.part")):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "the output was never started"
        time.sleep(0.005)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code
    assert one_error_line(err) == f"fastbert encode: {word}"
    assert out.read_text() == "GOOD\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.jsonl"]


def test_failed_npy_write_keeps_the_old_output(tmp_path, tiny, monkeypatch, capsys):
    """An exception in the middle of np.save (after bytes were written) leaves the old .npy and no temp file."""
    out = tmp_path / "emb.npy"
    np.save(out, np.arange(3.0))
    os.chmod(out, 0o640)
    real_save = np.save

    def broken_save(f, array):
        real_save(f, array[:1])
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "save", broken_save)
    assert main(["encode", "--model", tiny, "-o", str(out), "a", "b"]) == 130
    assert one_error_line(capsys.readouterr().err) == "fastbert encode: interrupted"
    monkeypatch.undo()
    np.testing.assert_array_equal(np.load(out), np.arange(3.0))
    assert [p.name for p in tmp_path.iterdir()] == ["emb.npy"]
    assert main(["encode", "--model", tiny, "-o", str(out), "a", "b"]) == 0
    assert np.load(out).shape == (2, 32)
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o640  # kept from the file it replaced, not mkstemp's 0o600
    (tmp_path / "new.npy").unlink(missing_ok=True)
    assert main(["encode", "--model", tiny, "-o", str(tmp_path / "new.npy"), "a"]) == 0
    assert (tmp_path / "new.npy").stat().st_mode & 0o777 == 0o666 & ~umask


# ---------------------------------------------------------------------------------------------------------------
# One output row per input line
# ---------------------------------------------------------------------------------------------------------------

line_text = st.text(alphabet=st.one_of(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"),
                                       st.sampled_from(NOT_LINE_BREAKS)), max_size=40)


def _expected(lines, crlf=False, final_newline=True):
    """The documented definition: one trailing "\\r" of each line is removed, nothing else changes. Written with
    "\\r\\n" ends, that "\\r" is the line end's own, so the line comes back as it was."""
    return [line if crlf and (i < len(lines) - 1 or final_newline) else line[:-1] if line.endswith("\r") else line
            for i, line in enumerate(lines)]


@given(lines=st.lists(line_text, min_size=1, max_size=30), final_newline=st.booleans(), crlf=st.booleans())
@settings(max_examples=300, deadline=None)
def test_split_lines_property(lines, final_newline, crlf):
    assume(not lines[0].startswith("\ufeff"))
    assume(final_newline or lines[-1] not in ("", "\r"))  # without a final "\n" an empty last line is no line
    end = "\r\n" if crlf else "\n"
    data = end.join(lines) + (end if final_newline else "")
    assert split_lines(data.encode("utf-8")) == _expected(lines, crlf, final_newline)


@given(lines=st.lists(line_text, min_size=1, max_size=12))
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_output_rows_equal_input_lines(tmp_path, tiny, capsys, lines):
    """End to end: a file and stdin of arbitrary lines -> exactly one .npy row and one JSON line per line."""
    assume(not lines[0].startswith("\ufeff"))
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    src, out = tmp_path / "in.txt", tmp_path / "out.npy"
    src.write_bytes(data)
    assert main(["encode", "--model", tiny, "-i", str(src), "-o", str(out)]) == 0
    assert np.load(out).shape == (len(lines), 32)
    capsys.readouterr()
    sys_stdin = sys.stdin
    try:
        sys.stdin = io.TextIOWrapper(io.BytesIO(data))
        assert main(["encode", "--model", tiny]) == 0
    finally:
        sys.stdin = sys_stdin
    rows = [json.loads(line) for line in capsys.readouterr().out.split("\n")[:-1]]
    assert [r["text"] for r in rows] == _expected(lines)
