"""Where a sweep's grid batches run: in this process (`local`, the default) or as Ray tasks (`ray`).

A grid batch is one family's cells. The family simulates them as one batched tensor program, and
that batch is the unit of common random numbers (sampling.RealStream draws a batch's real data
together, so a cell and its real-only counterfactuals see the same draws): a batch is never split.
The same batches give the same numbers whichever executor runs them, so `run_sweep` caches a result
under the same config hash either way, and a cached result is read back without running anything.

- `LocalExecutor`: the batches one after another in this process, on `resolve_device(device)`.
- `RayExecutor(address)`: one `@ray.remote` task per batch on a Ray cluster; `address` is a running
  cluster's GCS "host:port" (`ray start --head` prints it), or None: RAY_ADDRESS if set, else a new
  local Ray instance for this sweep. GPU-aware: with device "cuda", or "auto" on a cluster that
  reports GPUs, each task asks Ray for one GPU and simulates on it; otherwise tasks run on a CPU.
  The workers need this package (and torch) installed, as the driver has it. Ray is imported only
  when this executor runs (`pip install 'collapse-audit[ray]'`).

Errors are one-line messages: `ExecutorUnavailable` (Ray not installed, `missing`; the cluster not
reachable, `unreachable`), `BatchFailed` (a task raised); a device the cluster cannot serve is a
ValueError, as `resolve_device` raises for a local run.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from simulations.cells import FAMILIES, Cell

if TYPE_CHECKING:
    import numpy as np

EXECUTORS = ("local", "ray")
FAMILY_MODULES = {name: f"simulations.families.{name}" for name in FAMILIES}
RAY_INSTALL = "pip install 'collapse-audit[ray]'"
CONNECT_TIMEOUT_S = 5.0  # the TCP check of a cluster address before Ray is asked to connect
Outputs = list[dict[str, "np.ndarray"]]  # per cell of a batch: metric -> [seeds, generations + 1]


@dataclass(frozen=True)
class Batch:
    """One family's cells, simulated as one batched call: `simulate(cells, generations, seeds, device, seed, **params)`."""

    family: str
    cells: tuple[Cell, ...]
    generations: int
    seeds: int
    seed: int
    params: dict[str, Any] = field(default_factory=dict)


class ExecutorUnavailable(RuntimeError):
    """The executor cannot run here: `reason` "missing" (not installed) or "unreachable"."""

    def __init__(self, message: str, reason: Literal["missing", "unreachable"]):
        super().__init__(message)
        self.reason = reason


class BatchFailed(RuntimeError):
    """A batch raised on a worker; the message names the family and the worker's error."""


class Executor(Protocol):
    name: str

    def run(self, batches: Sequence[Batch], device: str, finished: Callable[[Batch], None] | None = None) -> list[Outputs]:
        """Every batch's outputs, in the order of `batches`; finished(batch) as each one completes."""
        ...


def family_module(name: str):
    """A family's module, imported on first use (the neural families are optional and heavier)."""
    try:
        return importlib.import_module(FAMILY_MODULES[name])
    except ModuleNotFoundError as error:
        if error.name != FAMILY_MODULES[name]:
            raise
        raise ValueError(f"family {name!r} is not available in this installation") from None


def run_batch(batch: Batch, device: str) -> Outputs:
    """Simulate one batch on `device` ("cpu", "cuda" or "auto"): per cell, metric -> float64 array."""
    from simulations.device import resolve_device

    outputs = family_module(batch.family).simulate(list(batch.cells), batch.generations, batch.seeds,
                                                   resolve_device(device), batch.seed, **batch.params)
    return [{name: values.numpy() for name, values in metrics.items()} for metrics in outputs]


class LocalExecutor:
    """Today's behaviour: the batches in order, in this process."""

    name = "local"

    def run(self, batches: Sequence[Batch], device: str, finished: Callable[[Batch], None] | None = None) -> list[Outputs]:
        from simulations.device import resolve_device

        resolved = str(resolve_device(device))  # a device this machine lacks is refused before any batch runs
        results = []
        for batch in batches:
            results.append(run_batch(batch, resolved))
            if finished:
                finished(batch)
        return results


def ray_missing() -> str | None:
    """Why the Ray executor cannot run here (Ray is not installed), or None; imports nothing."""
    if importlib.util.find_spec("ray") is None:
        return f"--executor ray needs Ray, which is not installed: {RAY_INSTALL}"
    return None


def check_address(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Raise ExecutorUnavailable when nothing accepts a TCP connection at `address` ("host:port",
    optionally "ray://host:port"). Ray itself waits minutes on an address where nothing listens."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        raise ValueError(f"--ray-address {address!r}: give the cluster's host:port, e.g. 127.0.0.1:6379")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as error:
        why = "timed out" if isinstance(error, TimeoutError) else (error.strerror or str(error))
        raise ExecutorUnavailable(f"Ray cluster at {address} is unreachable ({why})", "unreachable") from None


def placement(device: str, cluster_gpus: float, where: str = "the Ray cluster") -> tuple[str, int]:
    """(the device a Ray task simulates on, the GPUs it asks Ray for): one GPU per task with device
    "cuda", or "auto" on a cluster that reports GPUs; otherwise the CPU and none."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}: use one of auto, cpu, cuda")
    if device == "cuda" and not cluster_gpus:
        raise ValueError(f"device 'cuda' requested but {where} reports no GPU: use --device cpu or auto")
    on_gpu = device == "cuda" or (device == "auto" and cluster_gpus > 0)
    return ("cuda", 1) if on_gpu else ("cpu", 0)


class RayExecutor:
    """One Ray task per batch (see the module docstring)."""

    name = "ray"

    def __init__(self, address: str | None = None):
        self.address = address

    def run(self, batches: Sequence[Batch], device: str, finished: Callable[[Batch], None] | None = None) -> list[Outputs]:
        import numpy as np

        ray, owned = self._connect()
        try:
            worker_device, gpus = placement(device, ray.cluster_resources().get("GPU", 0),
                                            f"the Ray cluster at {self._where()}")
            task = ray.remote(run_batch).options(num_gpus=gpus, num_cpus=1, max_retries=0)
            pending = {task.remote(batch, worker_device): i for i, batch in enumerate(batches)}
            results: list[Outputs | None] = [None] * len(batches)
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                index = pending.pop(ready[0])
                try:
                    outputs = ray.get(ready[0])
                except ray.exceptions.RayError as error:
                    cause = getattr(error, "cause", None) or error
                    first = next((line for line in str(cause).splitlines() if line.strip()), type(cause).__name__)
                    raise BatchFailed(f"the {batches[index].family} batch failed on a Ray worker: {first}") from None
                # arrays from Ray's object store are read-only views: copy them so the sweep owns its numbers
                results[index] = [{name: np.array(values) for name, values in cell.items()} for cell in outputs]
                if finished:
                    finished(batches[index])
            return results  # type: ignore[return-value]
        finally:
            if owned:
                ray.shutdown()

    def _where(self) -> str:
        return self.address or os.environ.get("RAY_ADDRESS") or "this machine"

    def _connect(self):
        """(the ray module, whether this call started the connection and so ends it)."""
        if (why := ray_missing()) is not None:
            raise ExecutorUnavailable(why, "missing")
        address = self.address or os.environ.get("RAY_ADDRESS")
        if address and address not in ("auto", "local"):
            check_address(address)
        # No usage report sent from an audit tool unless its user asks for one (RAY_USAGE_STATS_ENABLED=1);
        # a head that accepts TCP but never answers as Ray is given up on after about this many seconds.
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        os.environ.setdefault("RAY_gcs_server_port_wait_time_s", "10")
        import logging

        import ray

        if ray.is_initialized():  # a connection the caller made (a notebook's ray.init): use it, leave it open
            current = ray.get_runtime_context().gcs_address
            if address and address not in ("auto", "local") and address.removeprefix("ray://") != current:
                raise ValueError(f"this process is already connected to the Ray cluster at {current}, not {address}")
            return ray, False
        options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}  # our lines only
        try:
            if address:
                ray.init(address=address, **options)
            else:
                ray.init(include_dashboard=False, **options)
        except (ConnectionError, TimeoutError, RuntimeError) as error:
            hint = ("; a cluster with token authentication (new Ray clusters' default) also needs RAY_AUTH_MODE=token "
                    "and its token (RAY_AUTH_TOKEN, or ~/.ray/auth_token)") if address and "RAY_AUTH_MODE" not in os.environ else ""
            raise ExecutorUnavailable(f"Ray cluster at {self._where()} is unreachable ({error}){hint}", "unreachable") from None
        return ray, True


def make_executor(name: str, address: str | None = None) -> Executor:
    """The executor called `name` ("local" or "ray"); `address` only for Ray."""
    if name == "local":
        if address:
            raise ValueError("--ray-address needs --executor ray")
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(address)
    raise ValueError(f"unknown executor {name!r}: use one of {', '.join(EXECUTORS)}")
