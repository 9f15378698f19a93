"""Pluggable executors for the zoo: local serial, local process pool, Ray.

An executor maps a picklable top-level function over items and yields ``(index, item, result)`` as each finishes,
where ``result`` is the return value or the exception that task raised (a task's failure never stops the others).
``parallel=False`` asks for one task at a time (the benchmark phase: latencies are not measured beside other jobs).
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

from onnxq.core.errors import OnnxqError

T = TypeVar("T")
Outcome = tuple[int, Any, Any]  # (index, item, result or exception)


class Executor(Protocol):
    name: str

    def run(self, fn: Callable[[Any], Any], items: Sequence[Any], *, parallel: bool = True) -> Iterator[Outcome]:
        ...


class SerialExecutor:
    """In this process, one task after another."""

    name = "serial"

    def run(self, fn: Callable[[Any], Any], items: Sequence[Any], *, parallel: bool = True) -> Iterator[Outcome]:
        for i, item in enumerate(items):
            try:
                yield i, item, fn(item)
            except Exception as e:
                yield i, item, e


class ProcessExecutor:
    """A ``concurrent.futures.ProcessPoolExecutor`` of ``jobs`` spawned workers (not forked: the parent may hold
    onnxruntime thread pools). A task whose worker died (a crash in native code) is retried once alone in a fresh
    pool, so it cannot take its neighbours down with it; if it dies again that is its result."""

    name = "process"

    def __init__(self, jobs: int) -> None:
        if jobs < 1:
            raise OnnxqError("--jobs must be >= 1")
        self.jobs = jobs

    def run(self, fn: Callable[[Any], Any], items: Sequence[Any], *, parallel: bool = True) -> Iterator[Outcome]:
        ctx = multiprocessing.get_context("spawn")
        retry: list[int] = []
        workers = min(self.jobs if parallel else 1, max(1, len(items)))
        with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = {pool.submit(fn, item): i for i, item in enumerate(items)}
            for fut in cf.as_completed(futures):
                i = futures[fut]
                try:
                    yield i, items[i], fut.result()
                except cf.process.BrokenProcessPool:
                    retry.append(i)
                except Exception as e:
                    yield i, items[i], e
        for i in sorted(retry):
            with cf.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
                try:
                    yield i, items[i], pool.submit(fn, items[i]).result()
                except cf.process.BrokenProcessPool:
                    yield i, items[i], OnnxqError("the worker process died (a crash in native code?)")
                except Exception as e:
                    yield i, items[i], e


class RayExecutor:
    """Ray tasks (one CPU each). Connects to ``address`` (``ray.init(address=...)``) or starts a local Ray with
    ``jobs`` CPUs if none is running in this process."""

    name = "ray"

    def __init__(self, jobs: int, address: str | None = None) -> None:
        try:
            import ray
        except ImportError as e:
            raise OnnxqError("the ray executor needs Ray: pip install ray") from e
        self.ray, self.jobs, self.address = ray, jobs, address

    def run(self, fn: Callable[[Any], Any], items: Sequence[Any], *, parallel: bool = True) -> Iterator[Outcome]:
        ray = self.ray
        if not ray.is_initialized():
            if self.address:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=True)
            else:
                ray.init(num_cpus=self.jobs, include_dashboard=False, log_to_driver=True)
        remote = ray.remote(num_cpus=1, max_retries=0)(fn)
        pending: dict[Any, int] = {}
        queue = list(range(len(items)))
        limit = len(items) if parallel else 1
        while queue or pending:
            while queue and len(pending) < limit:
                i = queue.pop(0)
                pending[remote.remote(items[i])] = i
            done, _ = ray.wait(list(pending), num_returns=1)
            i = pending.pop(done[0])
            try:
                yield i, items[i], ray.get(done[0])
            except Exception as e:  # RayTaskError wraps the task's exception
                cause = getattr(e, "cause", None)
                yield i, items[i], cause if isinstance(cause, Exception) else e


EXECUTORS = ("serial", "process", "ray")


def make_executor(name: str, jobs: int = 1, address: str | None = None) -> Executor:
    if name == "serial":
        return SerialExecutor()
    if name == "process":
        return ProcessExecutor(jobs)
    if name == "ray":
        return RayExecutor(jobs, address)
    raise OnnxqError(f"unknown executor '{name}'; choose from {', '.join(EXECUTORS)}")
