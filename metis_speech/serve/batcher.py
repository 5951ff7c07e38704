"""A bounded queue and a batcher in front of the model.

Every request puts one or more *items* in the queue (a streamed TTS request one per
sentence). One worker takes the oldest waiting item and every other waiting item with the
same *key* (task and decoding settings, which one task API call shares), up to
``max_batch``; while the batch is not full it waits up to ``max_wait_s`` after the oldest
item arrived for more. The batch then runs as one call of the task API in the model thread
(one thread: the model is never run concurrently), and each item's future gets its result.
Under load items pile up while a batch runs, so the next batches are fuller: throughput
grows with load instead of serialising.

A full queue refuses new items at once (:class:`QueueFull`, with a retry estimate). A batch
that fails is retried item by item, so one bad item fails only its own request.
"""

from __future__ import annotations

import asyncio
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Hashable, List, Optional, Sequence, Tuple

__all__ = ["Batcher", "QueueFull"]


class QueueFull(Exception):
    def __init__(self, retry_after: int):
        super().__init__(f"the server is busy; retry in {retry_after} s")
        self.retry_after = retry_after


@dataclass
class _Job:
    task: str
    key: Hashable
    item: Dict[str, Any]
    future: asyncio.Future
    enqueued: float = field(default_factory=time.monotonic)


# run(task, key, items) -> one result per item (runs in the model thread)
RunBatch = Callable[[str, Hashable, List[Dict[str, Any]]], Sequence[Any]]


class Batcher:
    def __init__(self, run: RunBatch, max_batch: int = 8, max_wait_s: float = 0.02, max_queue: int = 64,
                 on_batch: Optional[Callable[[str, int, float], None]] = None):
        if max_batch < 1 or max_queue < 1 or max_wait_s < 0:
            raise ValueError("max_batch and max_queue must be >= 1 and max_wait_s >= 0")
        self.run = run
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.on_batch = on_batch
        self._pending: List[_Job] = []
        self._running = 0
        self._wake: Optional[asyncio.Event] = None
        self._worker: Optional[asyncio.Task] = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metis-model")
        self._batch_s = 1.0  # running average of one batch's time (for Retry-After)

    @property
    def depth(self) -> int:
        """Items waiting (not yet in a running batch)."""
        return len(self._pending)

    @property
    def running(self) -> int:
        return self._running

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._worker = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        for job in self._pending:
            if not job.future.done():
                job.future.cancel()
        self._pending.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def retry_after(self) -> int:
        batches = math.ceil((len(self._pending) + 1) / self.max_batch) + (1 if self._running else 0)
        return int(min(120, max(1, math.ceil(batches * self._batch_s))))

    def submit(self, task: str, key: Hashable, items: Sequence[Dict[str, Any]]) -> List[asyncio.Future]:
        """Queue ``items`` (all or none); returns one future per item."""
        return [j.future for j in self.submit_jobs(task, [key] * len(items), items)]

    def submit_jobs(self, task: str, keys: Sequence[Hashable], items: Sequence[Dict[str, Any]]) -> List[_Job]:
        """Queue ``items`` with one key each (all or none); returns their jobs (``.future``)."""
        if self._wake is None:
            raise RuntimeError("the batcher is not started")
        if len(self._pending) + len(items) > self.max_queue:
            raise QueueFull(self.retry_after())
        loop = asyncio.get_running_loop()
        jobs = [_Job(task, (task, key), dict(it), loop.create_future()) for key, it in zip(keys, items)]
        self._pending.extend(jobs)
        self._wake.set()
        return jobs

    def _group(self) -> Tuple[List[_Job], float]:
        """The oldest live item's group and its deadline."""
        self._pending = [j for j in self._pending if not j.future.done()]  # drop cancelled requests
        if not self._pending:
            return [], 0.0
        first = self._pending[0]
        group = [j for j in self._pending if j.key == first.key][: self.max_batch]
        return group, first.enqueued + self.max_wait_s

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            group, deadline = self._group()
            while group and len(group) < self.max_batch and time.monotonic() < deadline:
                try:
                    await asyncio.wait_for(self._wake.wait(), deadline - time.monotonic())
                except asyncio.TimeoutError:
                    pass
                self._wake.clear()
                group, deadline = self._group()
            if not group:
                continue
            taken = set(map(id, group))
            self._pending = [j for j in self._pending if id(j) not in taken]
            await self._run(group)
            if self._pending:
                self._wake.set()

    async def _run(self, group: List[_Job]) -> None:
        loop = asyncio.get_running_loop()
        task, key = group[0].task, group[0].key[1]
        self._running = len(group)
        t0 = time.monotonic()
        try:
            results = await loop.run_in_executor(self._pool, self.run, task, key, [j.item for j in group])
            outcomes = [(r, None) for r in results]
        except Exception as e:  # noqa: BLE001 - handed to the requests, which turn it into an error reply
            if len(group) == 1:
                outcomes = [(None, e)]
            else:  # find the bad item: run each alone
                outcomes = []
                for j in group:
                    try:
                        outcomes.append(((await loop.run_in_executor(self._pool, self.run, task, key, [j.item]))[0], None))
                    except Exception as e1:  # noqa: BLE001
                        outcomes.append((None, e1))
        finally:
            self._running = 0
        dt = time.monotonic() - t0
        self._batch_s = 0.8 * self._batch_s + 0.2 * dt
        if self.on_batch is not None:
            self.on_batch(task, len(group), dt)
        for j, (res, err) in zip(group, outcomes):
            if j.future.done():
                continue
            if err is not None:
                j.future.set_exception(err)
            else:
                j.future.set_result(res)
