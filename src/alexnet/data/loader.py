"""DeviceLoader: batches of uint8 images (B, 3, H, W) (a channels_last view of the NHWC
bytes) from a packed dataset, on the device, gathered or decoded ahead by `workers` threads.
Sharding: global batch k = permutation(N)[k*B*W:(k+1)*B*W] from (seed, epoch), rank r takes
[r*B:(r+1)*B] of it; evaluation (no shuffle, no drop_last) sees each sample once, unpadded."""

from __future__ import annotations

import collections
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import KW_ONLY, dataclass

import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_jpeg

from alexnet.data.augment import Draws, ReusableBuffers, TrainTransform
from alexnet.data.packed import PackedDataset

Batch = tuple[torch.Tensor, torch.Tensor]
# torchvision 0.29 marks its image codecs deprecated (for TorchCodec)
warnings.filterwarnings(
    "ignore", "The image decoding and encoding capabilities of TorchVision", DeprecationWarning
)


def decode_torchvision(data, out: np.ndarray) -> None:
    """Decode JPEG `data` into `out` (H, W, 3) uint8: the same pixels as Pillow (tested), but
    faster, and it releases the GIL, so the loader's threads decode in parallel."""
    x = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
    if tuple(x.shape) != (3, out.shape[0], out.shape[1]):
        raise ValueError(f"decodes to {tuple(x.shape)}")
    out[...] = x.permute(1, 2, 0).numpy()


def decode_batch_device(records: Sequence[np.ndarray], device: torch.device) -> torch.Tensor:
    """Decode a batch of JPEG records on a CUDA device in one call (nvJPEG) -> uint8
    (B, 3, H, W) on `device`, channels_last memory."""
    tensors = [torch.from_numpy(np.array(r, dtype=np.uint8)) for r in records]
    decoded = decode_jpeg(tensors, mode=ImageReadMode.RGB, device=device)
    return torch.stack([d.permute(1, 2, 0) for d in decoded]).permute(0, 3, 1, 2)


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffle order for (seed, epoch): identical on every rank and platform."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n)


@dataclass(eq=False)
class DeviceLoader:
    """Iterate (images uint8 (B,3,H,W), labels int64 (B,)) on `device` for this rank."""

    dataset: PackedDataset
    batch_size: int
    _: KW_ONLY
    shuffle: bool
    drop_last: bool
    seed: int = 0
    rank: int = 0
    world_size: int = 1
    device: str | torch.device = "cpu"
    workers: int = 0

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} outside world_size {self.world_size}")
        self.device = torch.device(self.device)
        self.workers = max(0, int(self.workers))
        self.epoch = 0
        self.pin = self.device.type == "cuda" and torch.cuda.is_available()
        self._labels = np.ascontiguousarray(self.dataset.labels, dtype=np.int64)
        self._buffers = ReusableBuffers(np.uint8, keep=self.workers + 4)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    # ------------------------------------------------------------ index arithmetic
    def __len__(self) -> int:
        n, b, g = len(self.dataset), self.batch_size, self.batch_size * self.world_size
        full = n // g
        if self.drop_last:
            return full
        rest = n - full * g  # the last, partial global batch
        return full + (1 if rest > self.rank * b else 0)

    def batch_indices(self, k: int, order: np.ndarray | None = None) -> np.ndarray:
        """Dataset indices of this rank's batch k in the current epoch."""
        g, b = self.batch_size * self.world_size, self.batch_size
        lo = k * g + self.rank * b
        hi = min(lo + b, (k + 1) * g, len(self.dataset))
        if order is None:
            return np.arange(lo, max(lo, hi))
        return order[lo:hi]

    # ------------------------------------------------------------ loading
    def _labels_of(self, idx: np.ndarray) -> torch.Tensor:
        labels = torch.from_numpy(self._labels[idx])
        return labels.pin_memory() if self.pin else labels

    def _gather(self, idx: np.ndarray) -> Batch:
        """uint8 (B, H, W, 3) on the host: rows of the memory map, or decoded JPEG records."""
        images = self.dataset.images
        shape = (len(idx), *images.shape[1:])
        if self.pin:  # torch's pinned-memory allocator caches its blocks itself
            out = torch.empty(shape, dtype=torch.uint8, pin_memory=True)
        else:  # reused once nothing made from it is alive
            out = torch.from_numpy(self._buffers.get(shape))
        images.read_into(idx, out.numpy(), decode_torchvision)
        return out, self._labels_of(idx)

    def _gather_decode_on_device(self, idx: np.ndarray, stream=None) -> tuple:
        """CUDA + JPEG: the batch's checked records decoded together on the device, issued on
        `stream` (None: no side stream) -> (uint8 (B, 3, H, W), labels, an event when both are
        there or None)."""
        records = [self.dataset.images.record(int(i)) for i in idx]
        with torch.cuda.stream(stream):  # a no-op for None
            images = decode_batch_device(records, self.device)
            labels = self._send(self._labels_of(idx))
        if stream is None:
            return images, labels, None
        decoded = torch.cuda.Event()
        decoded.record(stream)
        return images, labels, decoded

    def _send(self, t: torch.Tensor) -> torch.Tensor:
        return t.to(self.device, non_blocking=self.pin)

    def _gather_augment(self, idx: np.ndarray, transform: TrainTransform, draws: Draws):
        """CPU fast path: crop + augment straight from the memory map (no uint8 copy), or from
        the batch's decoded JPEG records."""
        rows, at = self.dataset.images.rows(idx, self._buffers.get, decode_torchvision)
        return transform.apply_rows(rows, at, draws), self._labels_of(idx)

    def iterate(
        self,
        start_batch: int = 0,
        *,
        transform: TrainTransform | None = None,
        generator: torch.Generator | Callable[[int], torch.Generator] | None = None,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's batches of the epoch from batch `start_batch` on. With `transform`,
        float32 batches equal to `transform(images, generator)` of each uint8 batch;
        `generator`: one for the epoch or a function of the batch index k. Where the transform
        `fuses`, it runs in the worker threads, its draws taken here in batch order."""
        order = (
            epoch_permutation(len(self.dataset), self.seed, self.epoch) if self.shuffle else None
        )
        ks = range(max(0, int(start_batch)), len(self))
        size = tuple(self.dataset.images.shape[1:3])
        fused = transform is not None and transform.fuses(size, self.device)
        # JPEG records on CUDA: decoded there, a batch at once (nvJPEG)
        on_device = self.dataset.images.decodes_on_device and self.device.type == "cuda"

        def gen(k: int):
            return generator(k) if callable(generator) else generator

        side = self._side_stream()
        decode_stream = self._side_stream() if on_device else None

        def load(k: int):
            idx = self.batch_indices(k, order)
            if fused:
                draws = transform.draw(len(idx), size, gen(k))
                return self._gather_augment, (idx, transform, draws)
            if on_device:
                return self._gather_decode_on_device, (idx, decode_stream)
            return self._gather, (idx,)

        def finish(k: int, batch):
            if fused:
                return batch
            images, labels = batch[:2]
            if not on_device:  # (B, H, W, 3) on the host -> a channels_last (B, 3, H, W) view
                images, labels = self._send(images).permute(0, 3, 1, 2), self._send(labels)
            if transform is not None:
                images = transform(images, gen(k))
            return images, labels

        if side is None:
            yield from self._run(ks, load, finish)
            return

        def finish_on_side(k: int, batch):
            if on_device:  # decoded on the decode stream: the side stream waits for that only
                images, labels, decoded = batch
                side.wait_event(decoded)
                images.record_stream(side)  # made on the decode stream, read on this one
                labels.record_stream(side)
            with torch.cuda.stream(side):
                images, labels = finish(k, batch)
                ready = torch.cuda.Event()
                ready.record(side)
            return images, labels, ready

        yield from self._handed_over(self._run(ks, load, finish_on_side))

    def _side_stream(self):
        """CUDA: the stream the batches are copied and augmented on, apart from the model's."""
        if self.device.type != "cuda" or not torch.cuda.is_available():
            return None
        return torch.cuda.Stream(device=self.device)

    def _handed_over(self, batches: Iterator) -> Iterator[Batch]:
        """CUDA: batch k+1's copy and augmentation are issued on the side stream before batch
        k is handed over (they overlap the model's step); the model's stream waits for batch
        k's event only and marks its memory in use (`record_stream`)."""
        ahead = next(batches, None)
        while ahead is not None:
            following = next(batches, None)  # issued now, runs during the model's step
            images, labels, ready = ahead
            current = torch.cuda.current_stream(self.device)
            current.wait_event(ready)
            images.record_stream(current)
            labels.record_stream(current)
            yield images, labels
            ahead = following

    def _run(self, ks: range, load: Callable, finish: Callable) -> Iterator[Batch]:
        """Batches ks in order: loaded in this thread (workers=0) or in `workers` threads,
        up to workers + 1 batches ahead of the one yielded."""
        if self.workers == 0:
            for k in ks:
                fn, args = load(k)
                yield finish(k, fn(*args))
            return
        depth = self.workers + 1
        with ThreadPoolExecutor(self.workers, thread_name_prefix="alexnet-loader") as pool:
            pending: collections.deque = collections.deque()
            try:
                for k in ks:
                    fn, args = load(k)
                    pending.append((k, pool.submit(fn, *args)))
                    if len(pending) > depth:
                        done_k, fut = pending.popleft()
                        yield finish(done_k, fut.result())
                while pending:
                    done_k, fut = pending.popleft()
                    yield finish(done_k, fut.result())
            finally:
                for _, fut in pending:
                    fut.cancel()

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.iterate(0)
