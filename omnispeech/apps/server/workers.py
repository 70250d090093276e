"""A bounded pool of model workers for the asyncio server.

Each worker is one replica of the models (:func:`omnispeech.apps.models.replicate`) plus one
thread: torch work runs in the thread, so the event loop keeps answering other requests. A
request *leases* a replica (waiting in a bounded queue when all are busy), runs its work in
the worker thread, and gives the replica back when that work has really finished: a request
cancelled by its client releases its worker only once the thread has stopped touching the
models, never earlier.

Streamed work (TTS chunks) checks a stop flag between items, so a client that goes away stops
generation after the chunk in progress: :attr:`Workers.stopped_early` counts those.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from omnispeech.apps.models import Models

T = TypeVar("T")


class Busy(Exception):
    """Every worker is busy and the waiting queue is full."""


@dataclasses.dataclass(frozen=True)
class WorkerStats:
    """A snapshot of the pool.

    Attributes:
        workers: replicas in the pool.
        busy: replicas leased now.
        waiting: requests waiting for a replica.
        served: leases given back so far.
        stopped_early: streams stopped before their end because the client went away.
    """

    workers: int
    busy: int
    waiting: int
    served: int
    stopped_early: int


class _End:
    """Marks the end of a streamed job (a sentinel that no job yields)."""


@dataclasses.dataclass
class _Failure:
    error: BaseException


class Workers:
    """Replicas lent to requests, one at a time each, with a bounded wait queue.

    Args:
        replicas: the workers' models (one thread each).
        max_queue: most requests that may wait for a worker; more are refused with
            :class:`Busy` (the server answers 503).
    """

    def __init__(self, replicas: list[Models], max_queue: int = 64) -> None:
        if not replicas:
            raise ValueError("a pool needs at least one replica")
        self.size = len(replicas)
        self.max_queue = max_queue
        self._replicas = list(replicas)
        self._free: asyncio.Queue[Models] | None = None
        self.executor = ThreadPoolExecutor(self.size, thread_name_prefix="omnispeech-worker")
        self.busy = 0
        self.waiting = 0
        self.served = 0
        self.stopped_early = 0

    @property
    def models(self) -> Models:
        """The first replica (for read-only questions: languages, speakers, sample rate)."""
        return self._replicas[0]

    def stats(self) -> WorkerStats:
        """Counts for ``/v1/health`` and the tests."""
        return WorkerStats(self.size, self.busy, self.waiting, self.served, self.stopped_early)

    def _queue(self) -> asyncio.Queue[Models]:
        # Made on first use, inside the server's event loop.
        if self._free is None:
            self._free = asyncio.Queue()
            for r in self._replicas:
                self._free.put_nowait(r)
        return self._free

    async def lease(self) -> Lease:
        """Wait for a free replica.

        Raises:
            Busy: ``max_queue`` requests are already waiting.
        """
        free = self._queue()
        if free.empty() and self.waiting >= self.max_queue:
            raise Busy(f"the server is busy: {self.waiting} requests are waiting; retry later")
        self.waiting += 1
        try:
            replica = await free.get()
        finally:
            self.waiting -= 1
        self.busy += 1
        return Lease(self, replica)

    def _give_back(self, replica: Models) -> None:
        self.busy -= 1
        self.served += 1
        self._queue().put_nowait(replica)

    async def run(self, job: Callable[[Models], T]) -> T:
        """Run ``job(models)`` on a free worker and return its result."""
        lease = await self.lease()
        try:
            return await lease.run(job)
        finally:
            lease.release()

    def close(self) -> None:
        """Stop the worker threads (after the jobs running now)."""
        self.executor.shutdown(wait=False, cancel_futures=True)


class Lease:
    """Exclusive use of one replica until :meth:`release` (a live transcription session
    keeps its lease between audio pieces, because its streaming state lives in the modules).
    """

    def __init__(self, workers: Workers, replica: Models) -> None:
        self.workers = workers
        self.replica = replica
        self._pending: asyncio.Future | None = None
        self._released = False

    async def run(self, job: Callable[[Models], T]) -> T:
        """Run ``job(replica)`` in the worker thread."""
        loop = asyncio.get_running_loop()
        self._pending = loop.run_in_executor(self.workers.executor, job, self.replica)
        return await asyncio.shield(self._pending)

    def release(self) -> None:
        """Give the replica back, once any job still running on it has finished."""
        if self._released:
            return
        self._released = True
        pending = self._pending
        if pending is None or pending.done():
            self.workers._give_back(self.replica)
        else:
            pending.add_done_callback(lambda _: self.workers._give_back(self.replica))

    async def stream(self, job: Callable[[Models], Iterator[T]]) -> AsyncIterator[T]:
        """Items of ``job(replica)`` as the worker thread makes them; releases the lease at
        the end. Closing this iterator early (the client went away) stops the job after its
        current item and closes its generator.
        """
        loop = asyncio.get_running_loop()
        items: asyncio.Queue = asyncio.Queue()
        stop = threading.Event()

        def put(item: object) -> None:
            loop.call_soon_threadsafe(items.put_nowait, item)

        def produce(replica: Models) -> None:
            iterator = job(replica)
            try:
                for item in iterator:
                    put(item)
                    if stop.is_set():
                        self.workers.stopped_early += 1
                        break
            except BaseException as exc:  # handed to the consumer, which raises it
                put(_Failure(exc))
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()
                put(_End)

        self._pending = loop.run_in_executor(self.workers.executor, produce, self.replica)
        try:
            while True:
                item = await items.get()
                if item is _End:
                    break
                if isinstance(item, _Failure):
                    raise item.error
                yield item
        finally:
            stop.set()
            self.release()
