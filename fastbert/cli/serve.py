"""``fastbert serve``: parse the arguments and run the embedding server (:mod:`fastbert.embeddings.serve`)."""
from __future__ import annotations

import argparse
import os
import signal

from .common import EXIT_INTERRUPTED, device, positive_int, quantize_mode

HELP = """\
Serve embeddings over HTTP (pip install 'fastbert[serve]'): OpenAI's POST /v1/embeddings, TEI's POST /embed,
GET /v1/models, GET /health (200 once the model is loaded), GET /metrics (Prometheus). Requests from all clients
are batched by --max-batch-tokens; each answer holds exactly what 'fastbert encode' gives. Past
--max-concurrent-requests the server answers 429 with Retry-After. SIGTERM or Ctrl-C drains admitted requests,
then exits 0 (130 after Ctrl-C). The API key may also come from FASTBERT_API_KEY.
"""


def add_parser(sub) -> None:
    """The ``serve`` subcommand on ``sub`` (the parser's subparsers)."""
    srv = sub.add_parser("serve", help="serve embeddings over HTTP (OpenAI and TEI APIs)", description=HELP,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    srv.add_argument("--model", metavar="FOLDER", help="local model folder (default: the bundled all-MiniLM-L6-v2)")
    srv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    srv.add_argument("--port", type=int, default=8080, help="port (default 8080; 0: any free one, logged)")
    srv.add_argument("--quantize", type=quantize_mode, choices=["auto", "bfloat16"], help="reduced precision, as for encode")
    srv.add_argument("--device", type=device, help="cpu, cuda or cuda:N (default: cuda when available)")
    srv.add_argument("--max-batch-tokens", type=positive_int, default=16384, metavar="N",
                     help="tokens per model batch, summed over requests (default 16384)")
    srv.add_argument("--max-concurrent-requests", type=positive_int, default=512, metavar="N",
                     help="requests admitted at once; more get 429 (default 512)")
    srv.add_argument("--max-client-batch-size", type=positive_int, default=32, metavar="N",
                     help="texts per request; more get 413 (default 32)")
    srv.add_argument("--payload-limit", type=positive_int, default=2_000_000, metavar="BYTES",
                     help="request body size; larger get 413 (default 2000000)")
    srv.add_argument("--api-key", metavar="KEY", default=os.environ.get("FASTBERT_API_KEY"),
                     help="require 'Authorization: Bearer KEY' (all but /health)")
    srv.add_argument("--served-model-name", metavar="NAME",
                     help="the model id requests name (default: the folder's name; all-MiniLM-L6-v2 when bundled)")
    srv.set_defaults(func=run)


def run(args) -> int:
    try:
        from ..embeddings.serve.server import ServeSettings, serve
    except ImportError as e:
        raise ValueError(f"fastbert serve needs its extra ({e.name} is missing): pip install 'fastbert[serve]'") \
            from None
    settings = ServeSettings(
        model=args.model, quantize=args.quantize, device=args.device, max_batch_tokens=args.max_batch_tokens,
        max_concurrent_requests=args.max_concurrent_requests, max_client_batch_size=args.max_client_batch_size,
        payload_limit=args.payload_limit, api_key=args.api_key, served_model_name=args.served_model_name)
    stopped_by = serve(settings, host=args.host, port=args.port)
    return EXIT_INTERRUPTED if stopped_by == signal.SIGINT else 0
