"""Dynamic batching: concurrent requests share one forward pass, answers never mix.

Requests put their images on one bounded queue. One asyncio task takes the first waiting image,
gathers more until `max_batch` images or `max_wait_ms` have passed (or at once when no other
request is on its way: `incoming` counts requests still decoding), and runs the model on
them in one call on a single worker thread (all model work of the server runs on that thread,
so forward passes never compete for the CPU cores). Each image carries its own future: the
answer to row i of the batch goes to the request that sent image i.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


class QueueFull(Exception):
    """The queue holds `max_queue` images already: the caller answers 503 + Retry-After."""


@dataclass
class _Item:
    kind: str
    image: np.ndarray
    future: asyncio.Future


class Batcher:
    """Gather images of concurrent requests into batches of at most `max_batch`.

    Args:
        run_batch: the model call, (kind, uint8 (B, H, W, 3)) -> B answers; runs on the
            worker thread.
        max_batch: most images per forward pass (1 turns batching off).
        max_wait_ms: longest wait for more images once one is waiting.
        max_queue: most images waiting or running; more are refused with `QueueFull`.
        on_batch: called with each batch size (metrics); on_depth: with the queue depth.
        thread_init: run once on the worker thread before any model call.
        always_wait: wait the whole max_wait_ms for more images even when no request is on
            its way (by default a lone request runs at once).
    """

    def __init__(
        self,
        run_batch: Callable[[str, np.ndarray], Sequence[Any]],
        *,
        max_batch: int = 32,
        max_wait_ms: float = 5.0,
        max_queue: int = 256,
        on_batch: Callable[[int], None] | None = None,
        on_depth: Callable[[int], None] | None = None,
        thread_init: Callable[[], Any] | None = None,
        always_wait: bool = False,
    ) -> None:
        self.run_batch = run_batch
        self.max_batch = max(1, int(max_batch))
        self.max_wait = max(0.0, float(max_wait_ms)) / 1000.0
        self.max_queue = max(1, int(max_queue))
        self._on_batch = on_batch or (lambda n: None)
        self._on_depth = on_depth or (lambda n: None)
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue()
        self.depth = 0  # images accepted and not yet answered
        self.incoming = 0  # requests being read or decoded, whose images will come soon
        self.always_wait = always_wait
        self._task: asyncio.Task | None = None
        self._pool = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="alexnet-model", initializer=thread_init
        )

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Answer every image already accepted, then stop the worker."""
        if self._task is not None:
            await self._queue.put(None)
            await self._task
            self._task = None
        self._pool.shutdown(wait=True)

    async def submit(self, kind: str, images: Sequence[np.ndarray]) -> list[Any]:
        """Queue the images of one request (all or none) and wait for their answers."""
        if self.depth + len(images) > self.max_queue:
            raise QueueFull(f"{self.depth} images queued (limit {self.max_queue})")
        loop = asyncio.get_running_loop()
        items = [_Item(kind, img, loop.create_future()) for img in images]
        self.depth += len(items)
        self._on_depth(self.depth)
        for item in items:
            self._queue.put_nowait(item)
        return list(await asyncio.gather(*(item.future for item in items)))

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run fn(*args) on the model thread (for work outside the batches)."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def _gather(self, first: _Item) -> tuple[list[_Item], bool]:
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
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    async def _loop(self) -> None:
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is None:
                break
            batch, stopping = await self._gather(first)
            self._on_batch(len(batch))
            for kind in dict.fromkeys(item.kind for item in batch):
                await self._run([item for item in batch if item.kind == kind])
            self.depth -= len(batch)
            self._on_depth(self.depth)

    async def _run(self, items: list[_Item]) -> None:
        stack = np.stack([item.image for item in items])
        try:
            answers = await self.call(self.run_batch, items[0].kind, stack)
            if len(answers) != len(items):
                raise RuntimeError(f"{len(answers)} answers for {len(items)} images")
        except Exception as exc:  # noqa: BLE001 - every waiting request gets the error
            for item in items:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        for item, answer in zip(items, answers):
            if not item.future.done():  # the client may have gone away
                item.future.set_result(answer)
