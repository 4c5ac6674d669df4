"""walctl for Python agents: durable metrics with the design's API.

Every record call appends one record to a walctl log on local disk (an mmap'd, LZ4-compressed, checksummed segment
log) through ``libwalctl_c``, which ships inside this package. When a call returns a recorded result the record
survives the process being killed; ``walctl ship`` moves it to PostgreSQL or Kafka, ``walctl inspect`` shows it.

::

    from walctl import init_metrics, get_metrics_collector, measure_operation, measure_timing

    init_metrics("/var/lib/agent/metrics", agent_id="router-1")          # or METRICS_DIR, METRICS_AGENT_ID
    collector = get_metrics_collector()
    collector.record_timing("routing_decision_time_ms", 12.5, tags={"agent_type": "router"})
    await collector.record_gauge("coordination_agent_count", 4, "count")   # the same call, awaited

Calls are synchronous (a record is a few hundred nanoseconds of work: there is nothing to wait for) and return an
:class:`EmitResult`, which is also awaitable so the design's ``await collector.record_*(...)`` code runs unchanged.
Refused input (a bad name, NaN, too many tags...) returns a rejected result, or raises :class:`RejectedError` when
the collector was made with ``raise_on_reject=True``; nothing is written either way.

Processes: a log directory has one writer. For several processes (a worker pool), give a root with
``per_process_root=`` (or ``METRICS_PER_PROCESS=true``): each process writes ``{root}/{agent_id}-{pid}``
(:func:`process_log_directory`), and a child made by ``fork()`` opens its own directory at once. A collector opened
on a fixed directory is unusable in a forked child (:class:`ForkedError`), never shared. Collectors are closed at
interpreter exit.
"""

from __future__ import annotations

import atexit
import functools
import inspect
import os
import threading
import time
import weakref
from multiprocessing import util as multiprocessing_util
from typing import Any, Callable, Generator, List, Mapping, Optional, TypeVar, Union

from . import catalog
from ._native import Collector as _NativeCollector
from ._native import EmitResult, MetricHandle, library_version
from . import _native
from .catalog import MetricDefinition, MetricType

__all__ = [
    "EmitResult",
    "ForkedError",
    "MetricDefinition",
    "MetricHandle",
    "MetricType",
    "MetricsCollector",
    "MetricsError",
    "RejectedError",
    "catalog",
    "close",
    "flush_all",
    "get_metrics_collector",
    "init_metrics",
    "library_version",
    "measure_operation",
    "measure_timing",
    "process_log_directory",
    "sync",
]

__version__ = "0.1.0"

Tags = Optional[Mapping[str, Any]]
F = TypeVar("F", bound=Callable[..., Any])

# MARK: - Errors


class MetricsError(Exception):
    """A collector could not be opened, synced or closed (the message says why, naming any bad setting)."""


class RejectedError(MetricsError, ValueError):
    """A record was refused (only raised with ``raise_on_reject=True``); nothing was written.

    ``reason`` is the Swift collector's ``RejectionReason``: ``invalid_name``, ``non_finite_value``,
    ``too_many_tags``, ``invalid_tag_key``, ``tag_value_too_long``, ``invalid_unit``, ``invalid_correlation_id``,
    ``invalid_agent_id``, ``nul_character``, ``conflicting_definition``, ``symbol_table_full``, ``log_unavailable``,
    or ``invalid_type`` (a metric type outside the four).
    """

    def __init__(self, reason: str, message: str = "", code: int = 0) -> None:
        super().__init__(message or reason)
        self.reason = reason
        self.code = code


class ForkedError(MetricsError):
    """The collector was opened by the parent process: a child made by ``fork()`` must not write its log."""


_native._set_exceptions(MetricsError, RejectedError, ForkedError)

# MARK: - Per-process directories


def process_log_directory(root: Union[str, "os.PathLike[str]"], agent_id: str, pid: Optional[int] = None) -> str:
    """The log directory of one process under ``root``: ``{root}/{agent_id}-{pid}`` (pid: this process's).

    Every process of a pool gets its own log (a log has one writer); ``walctl ship --dir`` ships each, and
    ``walctl inspect`` reads each. Directories of processes that ended stay until shipped and removed by the operator.
    """
    return os.path.join(os.fspath(root), f"{agent_id}-{os.getpid() if pid is None else pid}")


def _truthy(text: Optional[str]) -> bool:
    return (text or "").strip().lower() in ("1", "true", "yes", "on")


# MARK: - The collector


class _Done:
    """The result of a call that is already complete; awaitable, so the design's ``await`` lines work."""

    __slots__ = ("value",)

    def __init__(self, value: Any = None) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, None, Any]:
        return self.value
        yield  # pragma: no cover  (makes this a generator)

    def __repr__(self) -> str:
        return "<completed>"


_live: "weakref.WeakSet[MetricsCollector]" = weakref.WeakSet()


class MetricsCollector(_NativeCollector):
    """Records metrics into a durable walctl log. Thread-safe; every method is synchronous.

    Configuration comes from the arguments, over the ``METRICS_*`` environment variables the Swift collector reads
    (``METRICS_DIR``, ``METRICS_AGENT_ID``, ``METRICS_ENABLED``, ``METRICS_DURABILITY``, ``METRICS_MAX_BYTES``,
    ``METRICS_WHEN_FULL``, ``METRICS_BATCH_SIZE``, ``METRICS_FLUSH_INTERVAL_MS``, ``METRICS_SOURCE_SERVICE``) unless
    ``use_environment=False``. ``METRICS_PER_PROCESS=true`` makes ``METRICS_DIR`` a per-process root.

    Args:
        directory: the log directory (``METRICS_DIR``).
        agent_id: stored with every record unless a call gives another (``METRICS_AGENT_ID``).
        per_process_root: instead of ``directory``: write ``{root}/{agent_id}-{pid}``, reopened after ``fork()``.
        raise_on_reject: raise :class:`RejectedError` for refused records instead of returning a rejected result.
        durability: ``"process"`` (default: survives the process being killed), ``"periodic:MS"`` or ``"sync"``
            (each record on stable storage before the call returns).
        max_bytes: size limit of the log (``"2G"``, ``"512M"``, or an int).
        when_full: ``"drop-newest"`` (default) or ``"block:MS"``; the GIL is released while a record waits.
        batch_size, flush_interval_ms, source_service: the shippers' settings, stored in the log's configuration.
        enabled: False makes every record a no-op returning a ``disabled`` result.

    Raises:
        MetricsError: a setting is invalid (the message names it), or the directory cannot be opened (for
            instance another live process writes it).
    """

    def __init__(
        self,
        directory: Optional[Union[str, "os.PathLike[str]"]] = None,
        agent_id: Optional[str] = None,
        *,
        per_process_root: Optional[Union[str, "os.PathLike[str]"]] = None,
        raise_on_reject: bool = False,
        durability: Optional[str] = None,
        max_bytes: Optional[Union[int, str]] = None,
        when_full: Optional[str] = None,
        batch_size: Optional[int] = None,
        flush_interval_ms: Optional[int] = None,
        source_service: Optional[str] = None,
        enabled: Optional[bool] = None,
        use_environment: bool = True,
    ) -> None:
        environment = os.environ if use_environment else {}
        if agent_id is None:
            agent_id = environment.get("METRICS_AGENT_ID") or None
        if directory is None and per_process_root is None and _truthy(environment.get("METRICS_PER_PROCESS")):
            per_process_root = environment.get("METRICS_DIR") or None
        settings: List[str] = []
        for name, value in (
            ("METRICS_DURABILITY", durability),
            ("METRICS_MAX_BYTES", max_bytes),
            ("METRICS_WHEN_FULL", when_full),
            ("METRICS_BATCH_SIZE", batch_size),
            ("METRICS_FLUSH_INTERVAL_MS", flush_interval_ms),
            ("METRICS_SOURCE_SERVICE", source_service),
            ("METRICS_ENABLED", None if enabled is None else ("true" if enabled else "false")),
        ):
            if value is not None:
                settings.append(f"{name}={value}")
        self._settings = settings
        self._use_environment = use_environment
        self._agent_id = agent_id
        self._per_process_root = os.fspath(per_process_root) if per_process_root is not None else None
        self._fixed_directory = os.fspath(directory) if directory is not None else None
        self._pid = os.getpid()
        self.raise_on_reject = raise_on_reject
        self._open_log()
        _live.add(self)

    def _open_log(self) -> None:
        directory = self._fixed_directory
        if self._per_process_root is not None:
            directory = process_log_directory(self._per_process_root, self._agent_id or "agent")
            os.makedirs(self._per_process_root, exist_ok=True)
        self._directory = directory if directory is not None else os.environ.get("METRICS_DIR")
        self._pid = os.getpid()
        self._open(directory, self._agent_id, self._settings, self._use_environment, self.raise_on_reject)
        _close_at_multiprocessing_exit(self)
        # A worker forked by multiprocessing clears its exit finalizers after the fork: register again there.
        multiprocessing_util.register_after_fork(self, _close_at_multiprocessing_exit)

    def _after_fork_in_child(self) -> None:
        if self.state in ("open", "closed"):
            was_open = self.state == "open"
            self._detach()  # the parent's log: never written, synced or closed from here
            if was_open and self._per_process_root is not None:
                self._open_log()

    # MARK: Properties

    @property
    def directory(self) -> Optional[str]:
        """The log directory this process writes."""
        return self._directory

    @property
    def agent_id(self) -> Optional[str]:
        """The default agent id of the records."""
        return self._agent_id

    @property
    def pid(self) -> int:
        """The process that opened the log."""
        return self._pid

    # MARK: Recording

    def record(
        self,
        definition: MetricDefinition,
        value: float,
        tags: Tags = None,
        correlation_id: Optional[str] = None,
        agent_id: Optional[str] = None,
    ) -> EmitResult:
        """Records a catalog metric (``catalog.ROUTING_DECISION_TIME``...) with its own type and unit."""
        return self._record(int(definition.type), definition.name, value, definition.unit, tags, correlation_id, agent_id)

    def record_metric(
        self,
        metric_type: Union[MetricType, int],
        metric_name: str,
        value: float,
        unit: str,
        tags: Tags = None,
        correlation_id: Optional[str] = None,
        agent_id: Optional[str] = None,
    ) -> EmitResult:
        """The general form: any name, type and unit. A type outside the four is rejected (``invalid_type``)."""
        return self._record(int(metric_type), metric_name, value, unit, tags, correlation_id, agent_id)

    def handle(
        self,
        metric: Union[str, MetricDefinition],
        tags: Tags = None,
        *,
        metric_type: Optional[Union[MetricType, int]] = None,
        unit: Optional[str] = None,
        agent_id: Optional[str] = None,
    ) -> MetricHandle:
        """Resolves a metric once for hot paths: ``h = collector.handle("routing_decision_time_ms", tags=...)``,
        then ``h.record(12.5)`` (about a quarter of the by-name cost).

        ``metric`` is a catalog definition or a name; a name outside the catalog needs ``metric_type`` and ``unit``.
        Raises :class:`RejectedError` when the metric is refused (always: a handle cannot be half made).
        """
        if isinstance(metric, MetricDefinition):
            definition: Optional[MetricDefinition] = metric
            name = metric.name
        else:
            name = metric
            definition = catalog.BY_NAME.get(name)
        if metric_type is None or unit is None:
            if definition is None:
                raise TypeError(f"{name} is not a catalog metric: give metric_type and unit")
            metric_type = definition.type if metric_type is None else metric_type
            unit = definition.unit if unit is None else unit
        return self._handle(int(metric_type), name, unit, dict(tags) if tags else None, agent_id)

    # MARK: Durability

    def flush(self, timeout_ms: int = 5000) -> _Done:
        """Returns once everything recorded so far is sealed into segments, where shippers see it."""
        self._flush(timeout_ms)
        return _Done()

    def sync(self) -> _Done:
        """Returns once everything recorded so far is on stable storage (survives power loss)."""
        self._sync()
        return _Done()

    def flush_all(self) -> _Done:
        """The design's shutdown call: seals everything for the shippers and syncs it to stable storage.
        Awaitable (``await collector.flush_all()``) and synchronous."""
        self._flush(5000)
        self._sync()
        return _Done()

    def close(self) -> _Done:
        """Seals everything and closes the log; later records return ``log_unavailable``. Idempotent."""
        if self.state == "open":
            self._close()
        return _Done()

    def __enter__(self) -> "MetricsCollector":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __await__(self) -> Generator[Any, None, "MetricsCollector"]:
        """``await init_metrics(...)`` gives the collector, as ``init_metrics(...)`` does."""
        return self
        yield  # pragma: no cover

    def __repr__(self) -> str:
        return f"MetricsCollector(directory={self._directory!r}, agent_id={self._agent_id!r}, state={self.state!r})"


# MARK: - The process-wide collector

_lock = threading.Lock()
_collector: Optional[MetricsCollector] = None


def init_metrics(
    directory: Optional[Union[str, "os.PathLike[str]"]] = None,
    agent_id: Optional[str] = None,
    *,
    per_process_root: Optional[Union[str, "os.PathLike[str]"]] = None,
    kafka_bootstrap_servers: Optional[str] = None,
    postgres_url: Optional[str] = None,
    buffer_size: Optional[int] = None,
    batch_size: Optional[int] = None,
    flush_interval_ms: Optional[int] = None,
    **options: Any,
) -> MetricsCollector:
    """Opens the process-wide collector (replacing, and closing, any earlier one) and returns it.

    Synchronous, and awaitable (``await init_metrics(...)``) as in the design. The log directory comes from
    ``directory``, ``per_process_root`` or ``METRICS_DIR``; other options are :class:`MetricsCollector`'s.

    The design's ``kafka_bootstrap_servers`` and ``postgres_url`` are accepted and kept as
    ``collector.shipping_targets``: shipping is done by ``walctl ship --dir ...`` beside the agent, which reads the
    log, so an agent never blocks on Kafka or PostgreSQL. ``buffer_size`` is accepted and unused (the log is the
    buffer, bounded by ``max_bytes``).
    """
    global _collector
    collector = MetricsCollector(
        directory,
        agent_id,
        per_process_root=per_process_root,
        batch_size=batch_size,
        flush_interval_ms=flush_interval_ms,
        **options,
    )
    collector.shipping_targets = {"kafka": kafka_bootstrap_servers, "postgres": postgres_url}
    with _lock:
        previous, _collector = _collector, collector
    if previous is not None and previous is not collector and previous.state == "open":
        previous.close()
    return collector


def get_metrics_collector() -> MetricsCollector:
    """The process-wide collector; opened from the ``METRICS_*`` environment on first use if
    :func:`init_metrics` was not called. Raises :class:`MetricsError` when ``METRICS_DIR`` is missing."""
    global _collector
    collector = _collector
    if collector is not None:
        return collector
    with _lock:
        if _collector is None:
            _collector = MetricsCollector()
        return _collector


def flush_all() -> _Done:
    """``get_metrics_collector().flush_all()`` when a collector exists."""
    if _collector is not None and _collector.state == "open":
        _collector.flush_all()
    return _Done()


def sync() -> _Done:
    """``get_metrics_collector().sync()`` when a collector exists."""
    if _collector is not None and _collector.state == "open":
        _collector.sync()
    return _Done()


def close() -> _Done:
    """Closes the process-wide collector (a later :func:`get_metrics_collector` opens a new one)."""
    global _collector
    with _lock:
        collector, _collector = _collector, None
    if collector is not None:
        collector.close()
    return _Done()


# MARK: - Timing helpers


class measure_timing:  # noqa: N801  (the design's name)
    """Times a block as a ``with`` or ``async with`` context manager and records it with ``record_timing``::

        async with measure_timing(collector, "contract_parse_time_ms"):
            contract = yaml.safe_load(contract_yaml)

    When the block raises, the timing is recorded with an ``error_type`` tag (the exception's class name) and the
    exception propagates.
    """

    __slots__ = ("_collector", "_name", "_tags", "_correlation_id", "_started", "result")

    def __init__(
        self,
        collector: MetricsCollector,
        metric_name: str,
        tags: Tags = None,
        correlation_id: Optional[str] = None,
    ) -> None:
        self._collector = collector
        self._name = metric_name
        self._tags = tags
        self._correlation_id = correlation_id
        self._started = 0
        self.result: Optional[EmitResult] = None
        """The EmitResult of the recorded timing, once the block ended."""

    def __enter__(self) -> "measure_timing":
        self._started = time.perf_counter_ns()
        return self

    def __exit__(self, exc_type: Any, exc: Any, traceback: Any) -> bool:
        self.result = _record_elapsed(
            self._collector, self._name, self._tags, self._correlation_id, self._started, exc_type
        )
        return False

    async def __aenter__(self) -> "measure_timing":
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: Any, traceback: Any) -> bool:
        return self.__exit__(exc_type, exc, traceback)


def _record_elapsed(
    collector: MetricsCollector,
    name: str,
    tags: Tags,
    correlation_id: Optional[str],
    started: int,
    exc_type: Any,
) -> Optional[EmitResult]:
    milliseconds = (time.perf_counter_ns() - started) / 1e6
    if exc_type is not None:
        tags = {**(tags or {}), "error_type": exc_type.__name__}
        try:
            return collector.record_timing(name, milliseconds, tags, correlation_id)
        except MetricsError:
            return None  # the block's own exception is the one to see
    return collector.record_timing(name, milliseconds, tags, correlation_id)


def measure_operation(metric_name: str, tags: Tags = None) -> Callable[[F], F]:
    """Decorator timing every call of a function (sync or ``async``) with the process-wide collector::

        @measure_operation("model_generation_time_ms", {"agent": "model_generator"})
        async def generate_model(contract): ...

    A call that raises is recorded with an ``error_type`` tag and the exception propagates.
    """

    def decorator(function: F) -> F:
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter_ns()
                try:
                    result = await function(*args, **kwargs)
                except BaseException as error:
                    _record_elapsed(get_metrics_collector(), metric_name, tags, None, started, type(error))
                    raise
                _record_elapsed(get_metrics_collector(), metric_name, tags, None, started, None)
                return result

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter_ns()
            try:
                result = function(*args, **kwargs)
            except BaseException as error:
                _record_elapsed(get_metrics_collector(), metric_name, tags, None, started, type(error))
                raise
            _record_elapsed(get_metrics_collector(), metric_name, tags, None, started, None)
            return result

        return wrapper  # type: ignore[return-value]

    return decorator


# MARK: - Process life


def _close_reference(reference: "weakref.ReferenceType[MetricsCollector]") -> None:
    collector = reference()
    if collector is not None and collector.state == "open" and collector.pid == os.getpid():
        collector.close()


def _close_at_multiprocessing_exit(collector: MetricsCollector) -> None:
    """multiprocessing ends its workers with os._exit (no atexit): its exit finalizers close the collector."""
    if collector.state == "open" and collector.pid == os.getpid():
        multiprocessing_util.Finalize(collector, _close_reference, args=(weakref.ref(collector),), exitpriority=10)


def _after_fork_in_child() -> None:
    for collector in list(_live):
        collector._after_fork_in_child()


def _close_at_exit() -> None:
    for collector in list(_live):
        if collector.state == "open" and collector.pid == os.getpid():
            try:
                collector.close()
            except MetricsError:
                pass


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_close_at_exit)
