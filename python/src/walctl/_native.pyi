from typing import Any, Dict, Generator, List, Mapping, Optional

ABI_VERSION: int

def library_version() -> str: ...
def status_name(code: int) -> str: ...
def _set_exceptions(base: type, rejected: type, forked: type) -> None: ...

class EmitResult:
    """What a record call did; awaitable (already complete)."""

    @property
    def status(self) -> str: ...
    @property
    def code(self) -> int: ...
    @property
    def seq(self) -> Optional[int]: ...
    @property
    def recorded(self) -> bool: ...
    @property
    def reason(self) -> Optional[str]: ...
    def __await__(self) -> Generator[Any, None, "EmitResult"]: ...

class MetricHandle:
    """A metric resolved once; record(value) is the fast path."""

    @property
    def name(self) -> str: ...
    @property
    def unit(self) -> str: ...
    @property
    def type_code(self) -> int: ...
    @property
    def tags(self) -> Dict[str, str]: ...
    def record(self, value: float, correlation_id: Optional[str] = None) -> EmitResult: ...

class Collector:
    raise_on_reject: bool
    @property
    def state(self) -> str: ...
    @property
    def may_block(self) -> bool: ...
    def record_timing(
        self,
        metric_name: str,
        duration_ms: float,
        tags: Optional[Mapping[str, Any]] = None,
        correlation_id: Optional[str] = None,
        agent_id: Optional[str] = None,
    ) -> EmitResult: ...
    def record_counter(
        self,
        metric_name: str,
        count: float = 1,
        tags: Optional[Mapping[str, Any]] = None,
        correlation_id: Optional[str] = None,
        agent_id: Optional[str] = None,
    ) -> EmitResult: ...
    def record_gauge(
        self,
        metric_name: str,
        value: float,
        unit: str,
        tags: Optional[Mapping[str, Any]] = None,
        correlation_id: Optional[str] = None,
        agent_id: Optional[str] = None,
    ) -> EmitResult: ...
    def record_rate(
        self,
        metric_name: str,
        rate_percent: float,
        tags: Optional[Mapping[str, Any]] = None,
        correlation_id: Optional[str] = None,
        agent_id: Optional[str] = None,
    ) -> EmitResult: ...
    def stats(self) -> Dict[str, int]: ...
    def _record(
        self,
        metric_type: int,
        metric_name: str,
        value: float,
        unit: str,
        tags: Optional[Mapping[str, Any]] = None,
        correlation_id: Optional[str] = None,
        agent_id: Optional[str] = None,
    ) -> EmitResult: ...
    def _handle(
        self, metric_type: int, metric_name: str, unit: str, tags: Optional[Dict[str, Any]], agent_id: Optional[str]
    ) -> MetricHandle: ...
    def _open(
        self, directory: Optional[str], agent_id: Optional[str], settings: List[str], use_environment: bool,
        raise_on_reject: bool,
    ) -> None: ...
    def _detach(self) -> None: ...
    def _close(self) -> None: ...
    def _sync(self) -> None: ...
    def _flush(self, timeout_ms: int = ...) -> None: ...
