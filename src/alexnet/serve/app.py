"""The HTTP application (FastAPI): the JSON API under /v1, /metrics, /healthz and the page.

Every error is a JSON `{"error": "..."}`: 401 (missing or wrong API key), 404, 408 and 431
(`connections`), 413 (body or image over its limit), 415 (not an image, wrong Content-Type), 422
(bad parameters), 503 + Retry-After (queue full, too many connections), 500 (a bug: the server
stays up). Metrics are labelled by route template, not by path.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hmac
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Annotated, Any

import numpy as np
import torch
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from alexnet.serve.answers import ApiError, Engine, NeighbourIndex
from alexnet.serve.batcher import Batcher, QueueFull
from alexnet.serve.connections import ConnectionLimits, close_early_answers

STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
MAX_IMAGES = 32  # in one request


class Metrics:
    """The server's Prometheus counters, histograms and gauges."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        n = "alexnet_serve_"
        self.requests = Counter(
            n + "requests", "HTTP requests answered", ["method", "path", "code"], registry=r
        )
        self.latency = Histogram(
            n + "request_seconds", "request latency", ["path"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.batch_size = Histogram(
            n + "batch_size", "images per forward pass", buckets=BATCH_BUCKETS, registry=r
        )
        self.queue_depth = Gauge(
            n + "queue_depth", "images accepted and not yet answered", registry=r
        )
        self.images = Counter(n + "images", "images run through the model", ["kind"], registry=r)
        self.connections = Gauge(n + "connections", "open connections", registry=r)
        self.refused = Counter(
            n + "connections_refused", "connections refused (503) over the bound", registry=r
        )
        self.timeouts = Counter(
            n + "request_timeouts", "clients cut at the request deadline", ["phase"], registry=r
        )


@dataclass
class ServeConfig:
    """Limits of one server: `alexnet serve`'s flags of the same names."""

    max_batch: int = 32
    max_wait_ms: float = 5.0
    always_wait: bool = False
    max_queue: int = 256
    max_body_mb: float = 16.0
    max_decoding: int = 2
    max_connections: int = 256
    request_timeout_s: float = 30.0
    api_key: str | None = None

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 2**20)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def request_images(request: Request, cfg: ServeConfig) -> list[tuple[str, bytes]]:
    """(name, bytes) of each image: the raw body (Content-Type image/*) or the multipart
    fields named `image`; 413 as soon as the body passes `max_body_bytes`."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    binary = ctype in ("multipart/form-data", "application/octet-stream")
    if not (binary or ctype.startswith("image/")):
        raise ApiError(415, f"Content-Type {ctype or 'missing'}: send image/* or multipart")
    limit, declared = cfg.max_body_bytes, request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"body of {int(declared)} bytes is over the limit of {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    if ctype != "multipart/form-data":
        if not body:
            raise ApiError(422, "empty body: send the image bytes")
        return [("image", body)]

    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    form = await Request(request.scope, replay).form(max_files=MAX_IMAGES, max_fields=64)
    files = [f for f in form.getlist("image") if not isinstance(f, str)]
    if not files:
        raise ApiError(422, "multipart body has no file field named 'image'")
    return [(f.filename or "image", await f.read()) for f in files]


class Server:
    """What the routes share: the engine, its batcher, the metrics and the limits."""

    def __init__(self, engine: Engine, cfg: ServeConfig) -> None:
        self.engine, self.cfg, self.metrics = engine, cfg, Metrics()
        m = self.metrics
        self.batcher = Batcher(
            engine.run_batch,
            max_batch=cfg.max_batch,
            max_wait_ms=cfg.max_wait_ms,
            max_queue=cfg.max_queue,
            on_batch=m.batch_size.observe,
            thread_init=engine.thread_init,
            always_wait=cfg.always_wait,
        )
        self.limits = ConnectionLimits(
            cfg.max_connections,
            cfg.request_timeout_s,
            on_refused=m.refused.inc,
            on_timeout=lambda phase: m.timeouts.labels(phase).inc(),
        )
        m.queue_depth.set_function(lambda: self.batcher.depth)
        m.connections.set_function(lambda: self.limits.open)
        # at most `max_decoding` decoded at once (each holds its full-size pixels); a request
        # waiting for a thread holds only its compressed bytes
        self.decode_pool = concurrent.futures.ThreadPoolExecutor(
            cfg.max_decoding, thread_name_prefix="alexnet-decode"
        )

    async def images_of(
        self, request: Request, one: bool = False
    ) -> tuple[list[str], list[np.ndarray]]:
        """Names and decoded uint8 (S, S, 3) images of a request (decoded on threads). `one`:
        it must hold exactly one, not for the batcher (which waits for the others meanwhile)."""
        self.batcher.incoming += not one
        try:
            items = await request_images(request, self.cfg)
            if len(items) > MAX_IMAGES:
                raise ApiError(422, f"{len(items)} images in one request (at most {MAX_IMAGES})")
            loop = asyncio.get_running_loop()
            decode = self.engine.decode
            arrays = await asyncio.gather(
                *(loop.run_in_executor(self.decode_pool, decode, d, n) for n, d in items)
            )
        finally:  # the caller submits without yielding to the event loop in between
            self.batcher.incoming -= not one
        if one and len(arrays) != 1:
            raise ApiError(422, "send exactly one image")
        return [n for n, _ in items], list(arrays)

    async def run(self, kind: str, request: Request) -> tuple[list[str], list[Any]]:
        """The names of a request's images and their answers through the batcher; 503 +
        Retry-After when the queue is full."""
        names, images = await self.images_of(request)
        try:
            out = await self.batcher.submit(kind, images)
        except QueueFull as exc:
            raise ApiError(503, f"server busy: {exc}", {"Retry-After": "1"}) from None
        self.metrics.images.labels(kind).inc(len(images))
        return names, out


def _png(png: bytes, cached: bool = False) -> Response:
    headers = {"Cache-Control": "max-age=3600"} if cached else None
    return Response(png, media_type="image/png", headers=headers)


def _server(request: Request) -> Server:
    return request.app.state.server


Served = Annotated[Server, Depends(_server)]


def _auth(request: Request, srv: Served) -> None:
    """With an API key: `Authorization: Bearer KEY`, compared in constant time."""
    key = srv.cfg.api_key
    given = request.headers.get("authorization", "").encode()
    if key is not None and not hmac.compare_digest(given, f"Bearer {key}".encode()):
        message = "missing or wrong API key (Authorization: Bearer KEY)"
        raise ApiError(401, message, {"WWW-Authenticate": "Bearer"})


def _index(srv: Served) -> NeighbourIndex:
    if srv.engine.index is None:
        raise ApiError(404, "this server has no neighbour index (none was given at its start)")
    return srv.engine.index


Indexed = Annotated[NeighbourIndex, Depends(_index)]
v1 = APIRouter(prefix="/v1", dependencies=[Depends(_auth)])


@v1.post("/predict")
async def predict(
    request: Request, srv: Served, topk: int = Query(5, ge=1, le=100_000)
) -> Response:
    names, probs = await srv.run("predict", request)
    p = srv.engine.predictor
    preds = [pred.to_json() for pred in p.predictions(names, torch.stack(probs), topk)]
    answer = {"model": p.meta.model_name, "crops": p.crops, "topk": topk}
    return JSONResponse({**answer, "predictions": preds})


@v1.post("/features")
async def features(request: Request, srv: Served) -> Response:
    names, feats = await srv.run("features", request)
    rows = [{"image": n, "features": f.tolist()} for n, f in zip(names, feats)]
    p = srv.engine.predictor
    answer = {"model": p.meta.model_name, "dim": srv.engine.feature_dim, "layer": p.feature_layer}
    return JSONResponse({**answer, "results": rows})


@v1.post("/neighbors")
async def neighbors(
    request: Request, srv: Served, index: Indexed, k: int = Query(8, ge=1, le=256)
) -> Response:
    names, feats = await srv.run("features", request)
    queries = np.stack([f.numpy() for f in feats])
    found = await srv.batcher.call(index.search, queries, k)
    results = [{"query": n, "neighbors": f} for n, f in zip(names, found)]
    return JSONResponse({"split": index.split, "k": k, "results": results})


@v1.get("/images/{split}/{i}.png")
async def thumbnail(index: Indexed, split: str, i: int) -> Response:
    return _png(await asyncio.to_thread(index.thumbnail, split, i), cached=True)


@v1.get("/files/{path:path}")
async def file_thumbnail(index: Indexed, path: str) -> Response:
    return _png(await asyncio.to_thread(index.file_thumbnail, path), cached=True)


@v1.get("/kernels.png")
async def kernels(srv: Served, columns: int = Query(16, ge=1, le=96)) -> Response:
    return _png(await srv.batcher.call(srv.engine.kernels_png, columns))


@v1.post("/conv1")
async def conv1(request: Request, srv: Served, columns: int = Query(16, ge=1, le=96)) -> Response:
    _, [image] = await srv.images_of(request, one=True)
    return _png(await srv.batcher.call(srv.engine.conv1_png, image, columns))


async def _one_image_json(request: Request, srv: Server, look, *args) -> JSONResponse:
    """`look(engine, image, *args)` on the model thread for a request of exactly one image."""
    [name], [image] = await srv.images_of(request, one=True)
    return JSONResponse({"image": name, **await srv.batcher.call(look, srv.engine, image, *args)})


@v1.post("/occlusion")
async def occlusion(
    request: Request,
    srv: Served,
    patch: int | None = Query(None, ge=1, le=4096),
    stride: int | None = Query(None, ge=1, le=4096),
) -> Response:
    return await _one_image_json(request, srv, Engine.occlusion, patch, stride)


@v1.post("/units")
async def units(
    request: Request,
    srv: Served,
    layer: str = Query(..., max_length=64),
    k: int = Query(8, ge=1, le=64),
) -> Response:
    return await _one_image_json(request, srv, Engine.units, layer, k)


@v1.get("/model")
async def model(srv: Served) -> dict:
    cfg = srv.cfg
    return {
        **srv.engine.info(),
        "max_batch": cfg.max_batch,
        "max_wait_ms": cfg.max_wait_ms,
        "max_body_bytes": cfg.max_body_bytes,
        "max_decoding": cfg.max_decoding,
        "max_pixels": srv.engine.max_pixels,
        "max_connections": cfg.max_connections,
        "request_timeout_s": cfg.request_timeout_s,
    }


status = APIRouter()


@status.get("/healthz")
async def healthz(srv: Served) -> dict:
    return {"status": "ok", "queue_depth": srv.batcher.depth, "connections": srv.limits.open}


@status.get("/metrics")
async def prometheus(srv: Served) -> Response:
    return Response(generate_latest(srv.metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return _error(exc.status, exc.message, exc.headers)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return _error(exc.status_code, str(exc.detail), exc.headers)


async def _gone(request: Request, exc: ClientDisconnect) -> Response:
    # the client left (or was cut at the request deadline) mid-body: nobody reads this;
    # 499 (nginx's "client closed request") is what the request metrics record
    return Response(status_code=499)


async def _bad_params(request: Request, exc: RequestValidationError) -> JSONResponse:
    parts = []
    for e in exc.errors():
        where = ".".join(str(x) for x in e.get("loc", ()) if x not in ("query", "path"))
        parts.append(f"{where}: {e.get('msg', 'invalid')}")
    return _error(422, "; ".join(parts) or "invalid parameters")


async def _bug(request: Request, exc: Exception) -> JSONResponse:
    return _error(500, f"internal error: {type(exc).__name__}: {exc}")


ERROR_HANDLERS = {
    ApiError: _api_error,
    StarletteHTTPException: _http_error,
    ClientDisconnect: _gone,
    RequestValidationError: _bad_params,
    Exception: _bug,
}


def create_app(engine: Engine, cfg: ServeConfig) -> FastAPI:
    """The application for one loaded model; the batcher starts and drains with it."""
    srv = Server(engine, cfg)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        srv.batcher.start()
        yield
        await srv.batcher.stop()  # uvicorn has finished the in-flight requests by now
        srv.decode_pool.shutdown(wait=True)

    app = FastAPI(
        title="alexnet serve",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        exception_handlers=ERROR_HANDLERS,
    )
    app.state.server = srv
    app.add_middleware(_observe, metrics=srv.metrics)
    app.add_middleware(close_early_answers)
    for route, (name, ctype) in STATIC.items():
        app.add_api_route(route, _static(name, ctype), methods=["GET"], include_in_schema=False)
    app.include_router(v1)
    app.include_router(status)
    return app


def _static(name: str, ctype: str):
    body = resources.files("alexnet.serve").joinpath("static", name).read_bytes()

    async def page() -> Response:
        return Response(body, media_type=ctype, headers={"Cache-Control": "no-cache"})

    return page


def _observe(app, metrics: Metrics):
    """ASGI middleware: a request counter and latency histogram per route template."""

    async def observed(scope, receive, send) -> None:
        if scope["type"] != "http":
            return await app(scope, receive, send)
        t0, status = time.perf_counter(), 500

        async def send_status(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, send_status)
        finally:
            path = getattr(scope.get("route"), "path", "other")
            metrics.requests.labels(scope["method"], path, str(status)).inc()
            metrics.latency.labels(path).observe(time.perf_counter() - t0)

    return observed
