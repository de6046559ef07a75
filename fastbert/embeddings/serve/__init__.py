"""``fastbert serve``: embeddings over HTTP (OpenAI's and TEI's APIs) on FastAPI + uvicorn.

:mod:`.server` builds the app and runs it (``ServeSettings``, ``create_app``, ``serve``); :mod:`.api` holds the
request and answer shapes of both APIs; :mod:`.routes` the endpoints; :mod:`.middleware` the API key, body-size and
metrics wrappers; :mod:`.batcher` packs the requests of all clients into model batches by token budget, on one model
thread; :mod:`.metrics` the Prometheus metrics. This package imports nothing on its own (the ``serve`` extra is
needed only when the server starts).
"""
