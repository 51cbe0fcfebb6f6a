"""`alexnet serve`: a trained AlexNet behind HTTP, with a page that shows what it sees.

- `answers.Engine`: the model (loaded once, through the safe loaders), uploads decoded and
  answered exactly as `alexnet predict` does, the neighbour index (paper §6.1, Fig. 4), conv1
  kernels (Fig. 3) and feature maps as PNGs.
- `batcher.Batcher`: dynamic batching of concurrent requests on one model thread.
- `app.create_app(engine, ServeConfig)`: the FastAPI application (JSON API, /metrics, /healthz,
  the static page in `static/`); `connections`: the request deadline and connection bound.
Needs the `serve` extra: pip install 'alexnet[serve]'.
"""
