"""`fastbert serve`: the real server in a child process on a free loopback port, real clients (the `openai` package,
httpx, raw sockets). Every answer is checked against `SentenceEncoder.encode` of the same texts.

`FASTBERT_SERVE_REQUESTS=10000 pytest tests/test_serve.py -k load` runs the concurrent load with that many requests
(default 128: 16 clients x 8).
"""
import base64
import json
import os
import re
import signal
import socket
import sys
import threading
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from sentence_folders import real_texts  # noqa: E402

import fastbert  # noqa: E402
from benchmarks.serve import ATOL, ServerProcess, fastbert_server, run_load  # noqa: E402

LOAD_REQUESTS = int(os.environ.get("FASTBERT_SERVE_REQUESTS", "128"))


@pytest.fixture(scope="module")
def encoder():
    return fastbert.SentenceEncoder(device="cpu")


@pytest.fixture(scope="module")
def texts():
    """Real paragraphs and a few passages over max_seq_length (256 tokens)."""
    return real_texts(120, 6, 1234) + ["", "Hi"]


@pytest.fixture(scope="module")
def reference(encoder, texts):
    return encoder.encode(texts)  # [N, 384]


@pytest.fixture(scope="module")
def server():
    with fastbert_server() as s:
        yield s


@pytest.fixture(scope="module")
def limited():
    with fastbert_server("--max-concurrent-requests", "2", "--max-client-batch-size", "4", "--payload-limit",
                         "20000", "--api-key", "sesame", "--served-model-name", "minilm") as s:
        yield s


def metric(url: str, name: str, headers=None) -> float:
    """One sample of GET /metrics (0 when absent)."""
    text = httpx.get(url + "/metrics", headers=headers).text
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, flags=re.M)
    return float(found.group(1)) if found else 0.0


# ------------------------------------------------------------------------------------------------ answers


def test_openai_client(server, encoder, texts, reference):
    """`client.embeddings.create` (the client's default base64, float, base64 asked for), `dimensions`, usage = tokens after
    truncation; the README's example runs as written against this server."""
    from openai import OpenAI

    client = OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    batch = texts[:7] + texts[-8:]  # long passages included
    for encoding_format in (None, "float", "base64"):  # None: the client asks for base64 and decodes it
        options = {"encoding_format": encoding_format} if encoding_format else {}
        answer = client.embeddings.create(input=batch, model="all-MiniLM-L6-v2", **options)
        if encoding_format == "base64":
            rows = np.stack([np.frombuffer(base64.b64decode(d.embedding), dtype="<f4") for d in answer.data])
        else:
            rows = np.asarray([d.embedding for d in answer.data], dtype=np.float32)
        assert [d.index for d in answer.data] == list(range(len(batch)))
        np.testing.assert_allclose(rows, np.concatenate([reference[:7], reference[-8:]]), atol=ATOL, rtol=0)
        assert answer.usage.prompt_tokens == int(encoder.tokenize_texts(batch).lengths.sum())
        assert answer.model == "all-MiniLM-L6-v2"
    one = client.embeddings.create(input=texts[3], model="all-MiniLM-L6-v2", dimensions=64)
    np.testing.assert_allclose(one.data[0].embedding, encoder.encode(texts[3], truncate_dim=64), atol=ATOL, rtol=0)
    assert [m.id for m in client.models.list().data] == ["all-MiniLM-L6-v2"]

    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md"), encoding="utf-8").read()
    (example,) = [b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if "OpenAI(" in b]
    namespace: dict = {}
    exec(example.replace("http://127.0.0.1:8080", server.url), namespace)
    assert len(namespace["vectors"]) == 2 and len(namespace["vectors"][0]) == 384


def test_tei_embed(server, encoder, texts, reference):
    """TEI's /embed over plain HTTP: normalize, truncation counted (header) or refused with truncate=false."""
    def too_long(text):
        return len(encoder.tokenizer(text)["input_ids"]) > 256

    batch = texts[:5] + [t for t in texts[5:] if too_long(t)][:2]
    long = [i for i, t in enumerate(batch) if too_long(t)]
    answer = httpx.post(server.url + "/embed", json={"inputs": batch, "normalize": False})
    assert answer.status_code == 200 and answer.headers["x-truncated-inputs"] == str(len(long)) and len(long) >= 2
    np.testing.assert_allclose(answer.json(), encoder.encode(batch), atol=ATOL, rtol=0)
    normalized = httpx.post(server.url + "/embed", json={"inputs": texts[0], "dimensions": 100}).json()
    np.testing.assert_allclose(normalized, encoder.encode(texts[:1], truncate_dim=100, normalize_embeddings=True),
                               atol=ATOL, rtol=0)
    refused = httpx.post(server.url + "/embed", json={"inputs": batch, "truncate": False})
    assert refused.status_code == 422
    assert refused.json()["error"].startswith(f"{len(long)} of {len(batch)} texts are longer than the model's "
                                              f"max_seq_length of 256 tokens (first: inputs[{long[0]}], ")


def test_concurrent_load_every_answer_is_its_own(server, texts, reference):
    """16 clients, random 1-16 texts per request, 5% of requests abandoned mid-flight: every answer holds exactly
    its own rows in its own order, nothing is lost, requests were batched together, nothing is left in flight."""
    clients = 16
    before = metric(server.url, "fastbert_batch_texts_count")
    result = run_load(server.url, texts, clients=clients, requests=-(-LOAD_REQUESTS // clients), seed=7,
                      reference=reference, disconnect_rate=0.05, time_limit=600)
    assert result["errors"] == {} and result["unsent"] == 0, result
    assert result["wrong"] == 0 and result["max_abs_diff"] <= ATOL, result
    assert result["answered"] + result["disconnected"] == result["requests"]
    assert result["answered"] >= 0.8 * result["requests"]
    batches = metric(server.url, "fastbert_batch_texts_count") - before
    assert batches < result["answered"], "requests of different clients were never batched together"
    deadline = time.monotonic() + 30  # abandoned requests may still finish on the model thread
    while metric(server.url, "fastbert_requests_in_flight") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert metric(server.url, "fastbert_requests_in_flight") == 0 and metric(server.url, "fastbert_queue_depth") == 0


def test_metrics_and_health(server):
    assert httpx.get(server.url + "/health").json() == {"status": "ok"}
    text = httpx.get(server.url + "/metrics").text
    for name in ("fastbert_requests_total", "fastbert_request_duration_seconds_bucket", "fastbert_queue_depth",
                 "fastbert_batch_texts_bucket", "fastbert_batch_tokens_bucket", "fastbert_tokens_total",
                 "fastbert_requests_in_flight", "fastbert_truncated_texts_total"):
        assert f"\n{name}" in text, name
    assert 'fastbert_requests_total{endpoint="/embed",status="200"}' in text


# ------------------------------------------------------------------------------------------------ refusals

BAD = [  # (path, raw body, status, start of the message)
    ("/embed", b'{"inputs": ', 400, "the request body is not valid JSON: EOF while parsing"),
    ("/embed", b"", 400, "the request body is not valid JSON"),
    ("/embed", b"\xff\xfe", 400, "the request body is not valid JSON"),
    ("/embed", b"[1, 2]", 422, "the request body must be a JSON object"),
    ("/embed", b'{"inputs": 5}', 422, "inputs: must be a string or an array of strings, got a number"),
    ("/embed", b'{"inputs": ["a", {"b": 1}]}', 422, "inputs: item 1 is an object, not a string"),
    ("/embed", b'{"inputs": []}', 422, "inputs is empty: send at least one text"),
    ("/embed", b'{"inputs": "a", "normalise": true}', 422, "unknown field 'normalise'"),
    ("/embed", b'{"inputs": "a", "normalize": "yes"}', 422, "normalize: Input should be a valid boolean"),
    ("/embed", b'{"inputs": "a", "dimensions": 385}', 422, "dimensions=385 is more than the model's 384"),
    ("/embed", b'{"inputs": "a", "prompt_name": "query"}', 422, "prompt name 'query' is not one of the model's"),
    ("/embed", b'{"inputs": "a", "truncation_direction": "Left"}', 422, "truncation_direction: Input should be"),
    ("/embed", json.dumps({"inputs": ["a"] * 33}).encode(), 413,
     "33 texts in one request, more than the server's --max-client-batch-size of 32"),
    ("/v1/embeddings", b'{"input": "a"}', 422, "model is required"),
    ("/v1/embeddings", b'{"input": [[1, 2]], "model": "all-MiniLM-L6-v2"}', 422,
     "input: item 0 is an array, not a string (token-id input is not supported"),
    ("/v1/embeddings", b'{"input": "a", "model": "text-embedding-3-small"}', 404,
     "model 'text-embedding-3-small' is not served here; this server serves 'all-MiniLM-L6-v2'"),
    ("/v1/embeddings", b'{"input": "a", "model": "all-MiniLM-L6-v2", "encoding_format": "int8"}', 422,
     "encoding_format: Input should be 'float' or 'base64'"),
    ("/v1/embeddings", b'{"input": "a", "model": "all-MiniLM-L6-v2", "dimensions": 0}', 422,
     "dimensions: Input should be greater than or equal to 1"),
    ("/nowhere", b"{}", 404, "no endpoint /nowhere"),
]


@pytest.mark.parametrize("path,body,status,message", BAD, ids=[f"{p}-{s}-{i}" for i, (p, _, s, _) in enumerate(BAD)])
def test_bad_requests_get_one_clear_error(server, path, body, status, message):
    answer = httpx.post(server.url + path, content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    text = error["message"] if path.startswith("/v1/") else error
    assert text.startswith(message), text
    assert httpx.post(server.url + "/embed", json={"inputs": "still here"}).status_code == 200


def test_api_key(limited):
    key = {"Authorization": "Bearer sesame"}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "sesame"}):
        answer = httpx.post(limited.url + "/v1/embeddings", json={"input": "a", "model": "minilm"}, headers=headers)
        assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer"
        assert answer.json()["error"]["message"].startswith("missing or wrong API key")
    assert httpx.get(limited.url + "/metrics").status_code == 401
    assert httpx.get(limited.url + "/health").status_code == 200  # probes need no key
    answer = httpx.post(limited.url + "/v1/embeddings", json={"input": "a", "model": "minilm"}, headers=key)
    assert answer.status_code == 200 and answer.json()["model"] == "minilm"


def test_payload_and_batch_limits(limited):
    key = {"Authorization": "Bearer sesame"}
    big = {"inputs": ["word " * 5000], "normalize": True}
    answer = httpx.post(limited.url + "/embed", json=big, headers=key)
    assert answer.status_code == 413
    assert re.fullmatch(r"the request body is \d+ bytes, more than the server's --payload-limit of 20000 bytes",
                        answer.json()["error"])

    def chunks():  # no Content-Length: the limit applies while reading
        yield b'{"inputs": ["'
        for _ in range(30):
            yield b"word " * 200
        yield b'"]}'

    answer = httpx.post(limited.url + "/embed", content=chunks(), headers=key)
    assert answer.status_code == 413 and "--payload-limit of 20000 bytes" in answer.json()["error"]
    answer = httpx.post(limited.url + "/embed", json={"inputs": ["a"] * 5}, headers=key)
    assert answer.status_code == 413 and "more than the server's --max-client-batch-size of 4" in answer.json()["error"]
    assert httpx.post(limited.url + "/embed", json={"inputs": ["a"] * 4}, headers=key).status_code == 200


def test_overload_is_refused_with_retry_after(limited, texts):
    """Past --max-concurrent-requests (2) the answer is 429 with Retry-After, at once; the admitted ones finish."""
    key = {"Authorization": "Bearer sesame"}
    long = sorted(texts, key=len)[-4:]  # four passages of 256 tokens: the model is busy for a while
    barrier, answers = threading.Barrier(12), []

    def client():
        barrier.wait()
        answers.append(httpx.post(limited.url + "/embed", json={"inputs": long}, headers=key, timeout=120))

    threads = [threading.Thread(target=client) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    statuses = sorted(a.status_code for a in answers)
    assert len(answers) == 12 and set(statuses) == {200, 429} and statuses.count(200) >= 2, statuses
    for a in answers:
        if a.status_code == 429:
            assert a.headers["retry-after"] == "1"
            assert a.json() == {"error": "the server has 2 requests in progress (--max-concurrent-requests); "
                                         "retry later", "error_type": "Overloaded"}
    assert metric(limited.url, "fastbert_requests_in_flight", key) == 0


def test_client_disconnects(server, texts, reference):
    """Clients that leave while sending, or while their request waits or runs, stop nothing: the server answers the
    next client correctly and counts the abandoned answers as 499."""
    host, port = server.url.removeprefix("http://").split(":")
    before = metric(server.url, 'fastbert_requests_total{endpoint="/embed",status="499"}')
    with socket.create_connection((host, int(port))) as s:  # leaves halfway through its body
        s.sendall(b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 900\r\n\r\n"
                  b'{"inputs": ["half a')
    body = json.dumps({"inputs": sorted(texts, key=len)[-16:]}).encode()  # 16 long texts: the model is busy
    for _ in range(3):  # leave right after sending a complete request
        with socket.create_connection((host, int(port))) as s:
            s.sendall(b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
                      + str(len(body)).encode() + b"\r\n\r\n" + body)
    answer = httpx.post(server.url + "/embed", json={"inputs": texts[:3], "normalize": False})
    np.testing.assert_allclose(answer.json(), reference[:3], atol=ATOL, rtol=0)
    deadline = time.monotonic() + 30
    while metric(server.url, 'fastbert_requests_total{endpoint="/embed",status="499"}') < before + 3:
        assert time.monotonic() < deadline, "abandoned requests were not noticed"
        time.sleep(0.1)


# ------------------------------------------------------------------------------------------------ life cycle


def test_sigterm_drains_admitted_requests_then_exits_0(texts, reference):
    """8 requests of the 16 longest texts (each in its own order) are admitted; SIGTERM; every one is answered
    with its own rows, then the server exits 0."""
    server = fastbert_server()
    longest = np.argsort([len(t) for t in texts])[-16:]
    orders = [np.roll(longest, i) for i in range(8)]
    answers: dict[int, httpx.Response] = {}

    def client(i):
        body = {"inputs": [texts[j] for j in orders[i]], "normalize": False}
        answers[i] = httpx.post(server.url + "/embed", json=body, timeout=120)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(orders))]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while metric(server.url, "fastbert_requests_in_flight") < len(orders):  # all admitted (each ~4k tokens)
            assert time.monotonic() < deadline and not answers, "the requests were not all in flight at once"
            time.sleep(0.005)
        server.proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(120)
        assert server.proc.wait(60) == 0, "\n".join(server.log)
    finally:
        server.stop()
    for i, order in enumerate(orders):
        assert answers[i].status_code == 200, answers[i].text
        np.testing.assert_allclose(answers[i].json(), reference[order], atol=ATOL, rtol=0)
    assert any("Shutting down" in line for line in server.log)


def test_health_is_503_until_the_model_is_loaded():
    """In-process (a slow model factory), on a loopback port: /health and embedding requests answer 503 with
    Retry-After while the model loads, 200 after."""
    import uvicorn

    from fastbert.embeddings.serve.server import ServeSettings, create_app

    release = threading.Event()

    def slow_encoder():
        release.wait(60)
        return fastbert.SentenceEncoder(device="cpu")

    app = create_app(ServeSettings(), slow_encoder)
    sock = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        health = httpx.get(url + "/health")
        assert health.status_code == 503 and health.headers["retry-after"] == "1"
        answer = httpx.post(url + "/embed", json={"inputs": "a"})
        assert answer.status_code == 503 and answer.json()["error"] == "the model is still loading; retry shortly"
        release.set()
        while httpx.get(url + "/health").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert httpx.post(url + "/embed", json={"inputs": "a"}).status_code == 200
    finally:
        release.set()
        server.should_exit = True
        thread.join(30)
        sock.close()


def test_a_model_that_does_not_load_stops_the_server(tmp_path):
    with pytest.raises(RuntimeError, match=r"exited with 1:(.|\n)*fastbert serve: error: model folder .* does not "
                                           r"exist"):
        ServerProcess([sys.executable, "-m", "fastbert", "serve", "--port", "0", "--model",
                       str(tmp_path / "missing")])


def test_binds_loopback_by_default():
    from fastbert.cli import build_parser

    args = build_parser().parse_args(["serve"])
    assert args.host == "127.0.0.1" and args.port == 8080 and args.api_key is None

