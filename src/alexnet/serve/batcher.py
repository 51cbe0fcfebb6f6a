"""Dynamic batching: concurrent requests share one forward pass, answers never mix.

One task takes the first waiting image and gathers more until `max_batch` images or
`max_wait_ms` (at once when no other request is on its way: `incoming` counts requests still
decoding), then runs them in one call on the single model thread; row i answers image i.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


class QueueFull(Exception):
    """The queue holds `max_queue` images already: the caller answers 503 + Retry-After."""


Item = tuple[str, np.ndarray, asyncio.Future]  # kind, image, the future of its answer


class Batcher:
    """Gather images of concurrent requests into batches of at most `max_batch`.

    `run_batch(kind, uint8 (B, H, W, 3))` -> B answers, on the model thread (set up by
    `thread_init`); more than `max_queue` images waiting or running are refused (`QueueFull`);
    `on_batch(n)` sees each batch size; `always_wait`: wait the whole `max_wait_ms` for more
    images even when no request is on its way."""

    def __init__(
        self,
        run_batch: Callable[[str, np.ndarray], Sequence[Any]],
        *,
        max_batch: int = 32,
        max_wait_ms: float = 5.0,
        max_queue: int = 256,
        on_batch: Callable[[int], None] = lambda n: None,
        thread_init: Callable[[], Any] | None = None,
        always_wait: bool = False,
    ) -> None:
        self.run_batch, self.on_batch = run_batch, on_batch
        self.max_batch, self.max_wait, self.max_queue = max_batch, max_wait_ms / 1000, max_queue
        self.always_wait = always_wait
        self._queue: asyncio.Queue[Item | None] = asyncio.Queue()
        self.depth = 0  # images accepted and not yet answered
        self.incoming = 0  # requests being read or decoded, whose images will come soon
        self._task: asyncio.Task | None = None
        self._pool = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="alexnet-model", initializer=thread_init
        )

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Answer every image already accepted, then stop the worker."""
        await self._queue.put(None)
        await self._task
        self._pool.shutdown(wait=True)

    async def submit(self, kind: str, images: Sequence[np.ndarray]) -> list[Any]:
        """Queue the images of one request (all or none) and wait for their answers."""
        if self.depth + len(images) > self.max_queue:
            raise QueueFull(f"{self.depth} images queued (limit {self.max_queue})")
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in images]
        self.depth += len(images)
        for image, future in zip(images, futures):
            self._queue.put_nowait((kind, image, future))
        return list(await asyncio.gather(*futures))

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run fn(*args) on the model thread (for work outside the batches)."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def _gather(self, first: Item) -> list[Item]:
        """The first item plus whatever arrives within max_wait (up to max_batch)."""
        loop = asyncio.get_running_loop()
        batch, deadline = [first], loop.time() + self.max_wait
        while len(batch) < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                left = deadline - loop.time()
                if left <= 0 or (self.incoming <= 0 and not self.always_wait):
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), left)
                except asyncio.TimeoutError:
                    break
            if item is None:  # stop: seen again by `_loop` once this batch is answered
                self._queue.put_nowait(None)
                break
            batch.append(item)
        return batch

    async def _loop(self) -> None:
        while (first := await self._queue.get()) is not None:
            batch = await self._gather(first)
            self.on_batch(len(batch))
            for kind in dict.fromkeys(k for k, _, _ in batch):
                await self._run(kind, [(i, f) for k, i, f in batch if k == kind])
            self.depth -= len(batch)

    async def _run(self, kind: str, items: list[tuple[np.ndarray, asyncio.Future]]) -> None:
        try:
            answers = await self.call(self.run_batch, kind, np.stack([i for i, _ in items]))
        except Exception as exc:  # noqa: BLE001 - every waiting request gets the error
            for _, future in items:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), answer in zip(items, answers):
            if not future.done():  # the client may have gone away
                future.set_result(answer)
