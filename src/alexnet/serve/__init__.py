"""`alexnet serve`: a trained AlexNet behind HTTP (JSON API, metrics, a page that shows what it
sees). Needs the `serve` extra: pip install 'alexnet[serve]'."""
