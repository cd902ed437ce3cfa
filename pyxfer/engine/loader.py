"""``FusedLoader``: sharded, reshuffled batches of fused-augmented views, prefetched in a thread.

The loader walks the indices of an :class:`~pyxfer.data.ImageStore` (or of a
``torch.utils.data.Dataset`` of uint8 HWC images), gathers each uint8 batch and hands it to
:func:`pyxfer.ops.augment.apply` (the views of :func:`pyxfer.ops.augment.augment`, one
contiguous output per view) in a background thread. The C++ kernel releases the GIL, so
augmentation of the next ``prefetch`` batches overlaps the training step.

Order and randomness:

- the epoch's global order (:func:`epoch_order`) comes from
  ``numpy.random.Generator(Philox(key=seed + 2^64·epoch))``: the same on every rank and machine;
- rank ``r`` of ``w`` takes positions ``r, r + w, r + 2w, ...`` of it, and every rank has the
  same number of batches (as ``torch.utils.data.DistributedSampler``). For a store, the order
  is a permutation cut (``drop_last``) or padded by wrapping (otherwise) to a multiple of ``w``;
  for a sharded store (one with ``shard_bounds``) the shards are permuted, each rank is given a
  contiguous run of the permuted shards (so it reads only those) and its images in its own
  shuffled order;
- the views of an image depend only on ``(seed, epoch, dataset index, view)`` (Philox in the
  kernel), not on the batch size, the thread count or the rank.

Iterating to the end of an epoch advances the loader to the next epoch; :meth:`set_epoch`
chooses one explicitly. :meth:`state_dict` records ``(epoch, position)``, where ``position``
counts the batches handed to the consumer, so a loader restored with :meth:`load_state_dict`
continues with exactly the next batch and the same views.

Examples:
    >>> import numpy as np
    >>> from pyxfer.data import ImageStore
    >>> store = ImageStore(np.zeros((64, 8, 8, 1), np.uint8), np.arange(64) % 4)
    >>> with FusedLoader(store, batch_size=16, views="simclr", size=8, seed=0) as loader:
    ...     batch = next(iter(loader))
    >>> [tuple(v.shape) for v in batch.views], tuple(batch.labels.shape)
    ([(16, 1, 8, 8), (16, 1, 8, 8)], (16,))
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import queue
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pyxfer.data.store import check_image
from pyxfer.ops.augment import ViewSpec, apply, preset, sample_params

log = logging.getLogger("pyxfer.engine.loader")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
GRAY_MEAN = (0.449,)
GRAY_STD = (0.226,)


@dataclass
class Batch:
    """One batch from :class:`FusedLoader`.

    Attributes:
        views: one float tensor (N, C, h, w) per view, in view order (views of different sizes,
            e.g. multi-crop, have different h, w).
        labels: int64 (N,) class ids (-1 unlabelled), or ``None`` when the loader has
            ``labels=False``.
        indices: int64 (N,) dataset index of each image.
    """

    views: list[torch.Tensor]
    labels: torch.Tensor | None
    indices: torch.Tensor

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """The batch with every tensor moved to ``device``."""
        return Batch(
            [v.to(device, non_blocking=non_blocking) for v in self.views],
            None if self.labels is None else self.labels.to(device, non_blocking=non_blocking),
            self.indices,
        )


class _Error:
    """Carries an exception from the producer thread to the consumer."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_END = object()


def _is_store(dataset: Any) -> bool:
    return hasattr(dataset, "batch") and hasattr(dataset, "labels") and hasattr(dataset, "is_dense")


def _hwc(img: Any, where: str) -> np.ndarray:
    """One uint8 (H, W, C) image from an array or a (CPU or CUDA) tensor."""
    if isinstance(img, torch.Tensor):
        img = img.detach().cpu().numpy()
    return check_image(img, where)


class FusedLoader:
    """Batches of augmented views from uint8 images, sharded by rank, prefetched in a thread.

    Args:
        dataset: an ``ImageStore`` (dense, possibly memory-mapped, or ragged), or a
            ``torch.utils.data.Dataset`` whose items are a uint8 (H, W, C) image (array or
            tensor) or an ``(image, label)`` pair. A compressed store
            (:class:`~pyxfer.data.JpegStore`) has its views drawn on the original sizes and each
            image decoded only as large as its crops need.
        batch_size: images per batch on this rank (each image gives ``len(views)`` views).
        views: a preset name (``"simclr"``...), a ``ViewSpec`` list, or ``None`` for plain eval
            preprocessing (resize the shorter side to ``size``, centre crop, normalise).
        size: output side of the (global) views; default ``input_spec.size``, else the images'
            shorter side (dense store, or the first item of a torch Dataset).
        shuffle: reshuffle every epoch (from ``(seed, epoch)``); otherwise dataset order.
        seed: seed of the order and of the augmentation.
        epoch: starting epoch.
        drop_last: drop the last incomplete batch (and cut the data to a multiple of the world
            size); otherwise the last batch is short and the data is padded by wrapping.
        rank, world_size: this process's shard; default from ``torch.distributed`` when it is
            initialised, else (0, 1).
        threads: kernel threads (0 = all cores); never changes the output.
        prefetch: batches prepared ahead (queue size), >= 1.
        dtype: ``"float32"`` or ``"float16"`` views.
        mean, std: normalisation (one value per channel); default from ``input_spec``, else
            ImageNet's.
        input_spec: a backbone's ``InputSpec`` giving the defaults of ``size``, ``mean``,
            ``std``.
        labels: also yield labels.
        pin_memory: put the views in page-locked memory (in the thread) for fast, asynchronous
            copies to a CUDA device.
        preset_options: more keyword arguments of :func:`pyxfer.ops.augment.preset` when
            ``views`` is a preset name (DINO's ``n_local``, ``local_size``).

    The thread stops, and is joined, on :meth:`close` (or leaving a ``with`` block), when the
    loader or its iterator is garbage collected, and at interpreter exit, even in the middle of
    an epoch or after a ``KeyboardInterrupt``.
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int,
        views: str | Sequence[ViewSpec] | ViewSpec | None = "simclr",
        *,
        size: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        epoch: int = 0,
        drop_last: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
        threads: int = 0,
        prefetch: int = 2,
        dtype: str = "float32",
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        input_spec: Any = None,
        labels: bool = True,
        pin_memory: bool = False,
        preset_options: dict[str, Any] | None = None,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected an integer >= 1, received {batch_size!r}")
        if prefetch < 1:
            raise ValueError(f"prefetch: expected >= 1, received {prefetch}")
        if dtype not in ("float32", "float16"):
            raise ValueError(f"dtype: expected 'float32' or 'float16', received {dtype!r}")
        if not 0 <= int(seed) < 2**64:
            raise ValueError(f"seed: expected an integer in [0, 2^64), received {seed}")
        self.dataset = dataset
        self._store = _is_store(dataset)
        if not self._store and not (
            hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")
        ):
            raise ValueError(
                "dataset: expected a pyxfer ImageStore or a torch Dataset with __len__ and "
                f"__getitem__, received {type(dataset).__name__}"
            )
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_last = drop_last
        self.threads = threads
        self.prefetch = prefetch
        self.dtype = dtype
        self.with_labels = labels
        self.pin_memory = pin_memory

        if rank is None or world_size is None:
            dist = torch.distributed
            if dist.is_available() and dist.is_initialized():
                rank = dist.get_rank() if rank is None else rank
                world_size = dist.get_world_size() if world_size is None else world_size
            else:
                rank = 0 if rank is None else rank
                world_size = 1 if world_size is None else world_size
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(
                f"rank, world_size: expected 0 <= rank < world_size, received {rank}, {world_size}"
            )
        self.rank, self.world_size = int(rank), int(world_size)

        channels = self._channels()
        if size is None:
            size = getattr(input_spec, "size", None) or self._image_side()
        if size is None:
            raise ValueError(
                "size: the images have different sizes (ragged store); give size= or input_spec="
            )
        self.size = int(size)
        if mean is None:
            mean = getattr(input_spec, "mean", None) or (
                GRAY_MEAN if channels == 1 else IMAGENET_MEAN
            )
        if std is None:
            std = getattr(input_spec, "std", None) or (GRAY_STD if channels == 1 else IMAGENET_STD)
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        if len(self.mean) != channels or len(self.std) != channels:
            raise ValueError(
                f"mean/std: expected {channels} values each (one per image channel), received "
                f"{len(self.mean)} and {len(self.std)}"
            )
        #: more arguments of the preset (``n_local``, ``local_size``); used when ``views`` is a name
        self.preset_options: dict[str, Any] = dict(preset_options or {})
        if views is None:
            self.specs: list[ViewSpec] | None = None
        elif isinstance(views, str):
            self.specs = preset(views, size=self.size, **self.preset_options)
        elif isinstance(views, ViewSpec):
            self.specs = [views]
        else:
            self.specs = list(views)
            if not self.specs or not all(isinstance(v, ViewSpec) for v in self.specs):
                raise ValueError(
                    "views: expected a preset name, None, or a non-empty list of ViewSpec"
                )
        self.views = views
        self.epoch = int(epoch)
        self.position = 0  # batches of the current epoch handed to the consumer
        self.wait_time = 0.0  # seconds the consumer spent in queue.get (wall clock)
        self.starved = 0  # batches the consumer asked for before they were ready
        self._active: weakref.ref[_Iter] | None = None  # the running pass (not kept alive)
        self._carry: _Producer | None = None  # producer already working on the next epoch

    # -- data description -------------------------------------------------------------------
    def _channels(self) -> int:
        if self._store:
            return int(self.dataset.channels)
        if len(self.dataset) == 0:
            return 3
        return int(self._item(0)[0].shape[2])

    def _image_side(self) -> int | None:
        """Shorter side of dense images (of the first item of a torch Dataset); None if ragged."""
        if self._store:
            shape = self.dataset.image_shape
            return None if shape is None else int(min(shape[0], shape[1]))
        if len(self.dataset) == 0:
            return None
        h, w = self._item(0)[0].shape[:2]
        return int(min(h, w))

    def _item(self, i: int) -> tuple[np.ndarray, int]:
        item = self.dataset[int(i)]
        if isinstance(item, (tuple, list)):
            img, label = item[0], int(item[1]) if len(item) > 1 else -1
        else:
            img, label = item, -1
        return _hwc(img, f"dataset[{i}]"), label

    @property
    def num_views(self) -> int:
        """Views per image (1 for eval preprocessing)."""
        return 1 if self.specs is None else len(self.specs)

    # -- order --------------------------------------------------------------------------------
    def _samples_per_rank(self) -> int:
        n = len(self.dataset)
        return n // self.world_size if self.drop_last else -(-n // self.world_size)

    def __len__(self) -> int:
        """Batches per epoch on this rank (the same on every rank)."""
        per_rank = self._samples_per_rank()
        return per_rank // self.batch_size if self.drop_last else -(-per_rank // self.batch_size)

    def epoch_indices(self, epoch: int | None = None) -> np.ndarray:
        """This rank's dataset indices for ``epoch`` in iteration order (int64)."""
        epoch = self.epoch if epoch is None else int(epoch)
        order = epoch_order(
            len(self.dataset),
            self.world_size,
            self._samples_per_rank(),
            seed=self.seed,
            epoch=epoch,
            shuffle=self.shuffle,
            bounds=getattr(self.dataset, "shard_bounds", None) if self._store else None,
        )
        return order[self.rank :: self.world_size]

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its first batch at the next iteration."""
        self.epoch, self.position = int(epoch), 0

    def state_dict(self) -> dict[str, int]:
        """JSON-safe state: epoch, batches consumed in it, seed."""
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict` (the next batch is the first not yet consumed)."""
        if int(state.get("seed", self.seed)) != self.seed:
            raise ValueError(
                f"state: recorded for seed {state['seed']}, this loader has seed {self.seed}"
            )
        self.epoch, self.position = int(state["epoch"]), int(state["position"])

    # -- producing ----------------------------------------------------------------------------
    def _gather(self, idx: np.ndarray) -> tuple[Any, np.ndarray]:
        """uint8 images (dense array or list) and int64 labels at ``idx``."""
        if self._store:
            return self.dataset.batch(idx), np.asarray(self.dataset.labels[idx], np.int64)
        items = [self._item(i) for i in idx]
        imgs = [im for im, _ in items]
        labels = np.asarray([lab for _, lab in items], np.int64)
        if imgs and all(im.shape == imgs[0].shape for im in imgs):
            return np.stack(imgs), labels
        return imgs, labels

    def make_batch(self, idx: np.ndarray, epoch: int) -> Batch:
        """Gather and augment the images at dataset indices ``idx`` (what the thread runs)."""
        decode_views = getattr(self.dataset, "decode_views", None) if self.specs else None
        if self.specs is None and hasattr(self.dataset, "decode_views"):
            # eval preprocessing of a compressed store: decode just large enough for the resize
            images = self.dataset.batch(idx, min_side=self.size, threads=self.threads)
            labels = np.asarray(self.dataset.labels[idx], np.int64)
        elif decode_views is not None:
            # A compressed store: the views are drawn on the original sizes (from its index, so
            # the same as from decoded pixels), then each image is decoded only as large as its
            # crops need and the boxes are mapped onto it; images it skips leave the batch.
            specs = self.specs
            assert specs is not None  # views=None took the branch above
            params = sample_params(
                specs,
                self.dataset.original_sizes(idx),
                idx,
                seed=self.seed,
                epoch=epoch,
                threads=self.threads,
            )
            images, params, kept = decode_views(
                idx, params, [spec.size for spec in specs], threads=self.threads
            )
            idx = idx[kept]
            labels = np.asarray(self.dataset.labels[idx], np.int64)
        else:
            images, labels = self._gather(idx)
        if self.specs is None:
            from pyxfer.ops.preprocess import preprocess

            out = preprocess(
                images,
                self.size,
                self.size,
                self.mean,
                self.std,
                dtype=self.dtype,
                threads=self.threads,
            )
            views = [torch.from_numpy(np.asarray(out))]
        else:
            # The views of `augment`, each written straight into its own contiguous (N, C, h, w)
            # output (no per-view copy out of an image-major array).
            if decode_views is None:
                hw = [im.shape[:2] for im in images]
                params = sample_params(
                    self.specs, hw, idx, seed=self.seed, epoch=epoch, threads=self.threads
                )
            nv = len(self.specs)
            views = [
                torch.from_numpy(
                    apply(
                        images,
                        np.ascontiguousarray(params[v::nv]),
                        size=spec.size,
                        views=1,
                        mean=self.mean,
                        std=self.std,
                        dtype=self.dtype,
                        threads=self.threads,
                    )
                )
                for v, spec in enumerate(self.specs)
            ]
        if self.pin_memory:
            views = [v.pin_memory() for v in views]
        return Batch(
            views,
            torch.from_numpy(labels) if self.with_labels else None,
            torch.from_numpy(np.ascontiguousarray(idx, np.int64)),
        )

    def __iter__(self) -> Iterator[Batch]:
        it = self._active() if self._active is not None else None
        if it is not None:
            it.close()
        producer, self._carry = self._carry, None
        if producer is None or not producer.continues(self.epoch, self.position):
            if producer is not None:
                producer.close()
            producer = _Producer(self, self.epoch, self.position)
        it = _Iter(self, producer)
        self._active = weakref.ref(it)
        return it

    def close(self) -> None:
        """Stop the producer thread (of the running pass, or prefetching the next epoch)."""
        it = self._active() if self._active is not None else None
        if it is not None:
            it.close()
        self._active = None
        if self._carry is not None:
            self._carry.close()
            self._carry = None

    def __enter__(self) -> FusedLoader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown
            self.close()

    def __repr__(self) -> str:
        return (
            f"FusedLoader(n={len(self.dataset)}, batch_size={self.batch_size}, "
            f"views={self.views!r}, size={self.size}, rank={self.rank}/{self.world_size}, "
            f"epoch={self.epoch}, position={self.position})"
        )


def epoch_order(
    n: int,
    world_size: int,
    per_rank: int,
    *,
    seed: int,
    epoch: int,
    shuffle: bool = True,
    bounds: np.ndarray | None = None,
) -> np.ndarray:
    """The global order of an epoch: position ``k·w + r`` is rank ``r``'s ``k``-th image.

    Args:
        n: images in the data set.
        world_size: ranks ``w``; every rank gets ``per_rank`` images (the order has
            ``per_rank·w`` positions).
        per_rank: images per rank (``n // w`` cuts, ``ceil(n / w)`` pads by wrapping).
        seed, epoch: the key of the Philox stream the order is drawn from.
        shuffle: permute; otherwise dataset (and shard) order.
        bounds: a sharded store's ``shard_bounds`` (images of shard ``k`` at
            ``bounds[k]:bounds[k+1]``); ``None`` or one shard: a plain permutation.

    With shards, the shards are permuted, the images of the permuted shards (in shard order)
    are cut into ``w`` contiguous runs of ``n/w`` (up to one), and rank ``r`` takes run ``r``,
    shuffled by its own stream and cut or padded (wrapping within the run) to ``per_rank``:
    each image is in one rank's run, and a rank reads only the shards its run covers (whole
    shards, but for at most two it shares with the ranks beside it).
    """
    key = int(seed) + (int(epoch) << 64)
    total = per_rank * world_size
    if bounds is None or len(bounds) <= 2:
        if shuffle:
            order = np.random.Generator(np.random.Philox(key=key)).permutation(n).astype(np.int64)
        else:
            order = np.arange(n, dtype=np.int64)
        if total <= n:
            return order[:total]
        return np.resize(order, total) if n > 0 else order  # wrap around to pad
    bounds = np.asarray(bounds, np.int64)
    shards = np.arange(len(bounds) - 1)
    if shuffle:
        shards = np.random.Generator(np.random.Philox(key=key)).permutation(shards)
    seq = np.concatenate([np.arange(bounds[k], bounds[k + 1], dtype=np.int64) for k in shards])
    cuts = (np.arange(world_size + 1) * n) // world_size
    runs = []
    for r in range(world_size):
        run = seq[cuts[r] : cuts[r + 1]]
        if shuffle:  # rank r's own stream: jumped 2^128 draws per rank past the shard draw
            run = np.random.Generator(np.random.Philox(key=key).jumped(r + 1)).permutation(run)
        if len(run) == 0 and per_rank:  # fewer images than ranks: pad from the whole order
            run = seq[r % n : r % n + 1] if n else run
        runs.append(run[:per_rank] if len(run) >= per_rank else np.resize(run, per_rank))
    if not total:
        return np.zeros(0, np.int64)
    return np.stack(runs, axis=1).reshape(-1)


def _produce(
    ref: weakref.ref[FusedLoader],
    epoch: int,
    position: int,
    q: queue.Queue,
    stop: threading.Event,
) -> None:
    """Thread body: batches of ``epoch`` from ``position``, then of the following epochs.

    Each epoch ends with ``(epoch, _END)``; the bounded queue makes the thread wait for the
    consumer, so at most ``prefetch`` batches are made ahead (across epoch boundaries too,
    so a new epoch starts without a bubble). The thread holds only a weak reference to the
    loader: dropping the loader ends it.
    """

    def put(item: Any) -> bool:
        # a blocking put: the thread sleeps until there is room (no polling that would take
        # the GIL from the training loop); close() sets ``stop`` and drains the queue to wake it
        q.put(item)
        return not stop.is_set()

    try:
        while not stop.is_set():
            loader = ref()
            if loader is None:
                return
            order = loader.epoch_indices(epoch)
            bs, n = loader.batch_size, len(loader)
            del loader
            for b in range(position, n):
                loader = ref()
                if loader is None or stop.is_set():
                    return
                batch = loader.make_batch(order[b * bs : (b + 1) * bs], epoch)
                del loader
                if not put((epoch, batch)):
                    return
            if not put((epoch, _END)):
                return
            epoch, position = epoch + 1, 0
    except BaseException as exc:  # handed to the consumer, which re-raises it
        put((epoch, _Error(exc)))


def _drain(q: queue.Queue) -> None:
    with contextlib.suppress(queue.Empty):
        while True:
            q.get_nowait()


def _stop_thread(q: queue.Queue, stop: threading.Event, thread: threading.Thread) -> None:
    """Stop a producer thread and wait for it; drop what it made (which wakes a blocked put)."""
    stop.set()
    _drain(q)
    if threading.current_thread() is thread:  # the loader died in its own thread: it ends itself
        return
    while thread.is_alive():
        _drain(q)
        thread.join(timeout=0.05)


# Producer threads still running, with what stops them: joined at interpreter exit. A daemon
# thread inside the compiled kernel when the interpreter finalises would be unwound through a
# frame that may not throw (the kernel's GIL release) when it comes back, and the C++ runtime
# aborts the process ("terminate called without an active exception", exit status 134).
_RUNNING: dict[threading.Thread, tuple[queue.Queue, threading.Event]] = {}
_RUNNING_LOCK = threading.Lock()


@atexit.register
def _stop_all_threads() -> None:
    with _RUNNING_LOCK:
        running = list(_RUNNING.items())
    for thread, (q, stop) in running:
        _stop_thread(q, stop, thread)


def _run_producer(*args: Any) -> None:
    try:
        _produce(*args)
    finally:
        with _RUNNING_LOCK:
            _RUNNING.pop(threading.current_thread(), None)


class _Producer:
    """The background thread and its bounded queue.

    The thread stops, and is joined, on :meth:`close`, when this object is garbage collected and
    at interpreter exit, whichever comes first; it never outlives the interpreter.
    """

    def __init__(self, loader: FusedLoader, epoch: int, position: int) -> None:
        self.queue: queue.Queue = queue.Queue(maxsize=loader.prefetch)
        self.stop = threading.Event()
        self.next_epoch = epoch  # the epoch whose first batch the queue holds next
        self.thread = threading.Thread(
            target=_run_producer,
            args=(weakref.ref(loader), epoch, position, self.queue, self.stop),
            name="pyxfer-loader",
            daemon=True,
        )
        with _RUNNING_LOCK:
            _RUNNING[self.thread] = (self.queue, self.stop)
        self._finalizer = weakref.finalize(self, _stop_thread, self.queue, self.stop, self.thread)
        try:
            self.thread.start()
        except BaseException:
            with _RUNNING_LOCK:
                _RUNNING.pop(self.thread, None)
            raise

    def continues(self, epoch: int, position: int) -> bool:
        """True when this producer is already making ``epoch`` from ``position``."""
        return position == 0 and epoch == self.next_epoch and self.thread.is_alive()

    def close(self) -> None:
        """Stop and join the thread; drop what it made."""
        self._finalizer()


class _Iter:
    """One pass over the rest of the current epoch."""

    def __init__(self, loader: FusedLoader, producer: _Producer) -> None:
        # the thread holds neither this iterator nor (strongly) the loader, so dropping the
        # iterator (a `break` out of a for loop) finalises it and stops the thread
        self.loader = loader
        self.epoch = loader.epoch
        self.producer: _Producer | None = producer

    def __iter__(self) -> _Iter:
        return self

    def __next__(self) -> Batch:
        if self.producer is None:
            raise StopIteration
        if self.producer.queue.empty():
            self.loader.starved += 1
        t0 = time.perf_counter()
        epoch, item = self.producer.queue.get()
        self.loader.wait_time += time.perf_counter() - t0
        if isinstance(item, _Error):
            self.close()
            raise item.exc
        if item is _END:
            # hand the still-running producer (already on the next epoch) to the loader
            self.producer.next_epoch = epoch + 1
            self.loader._carry, self.producer = self.producer, None
            self.loader.epoch, self.loader.position = epoch + 1, 0
            raise StopIteration
        self.loader.position += 1
        return item

    def close(self) -> None:
        """Stop the producer of an unfinished pass."""
        if self.producer is not None:
            self.producer.close()
            self.producer = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown
            self.close()
