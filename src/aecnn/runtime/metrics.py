"""The edge server's counters in the Prometheus text format, on an optional HTTP port.

Only imports ``prometheus-client`` (the ``metrics`` extra) when a port is asked for; without
one every method is a no-op. Series (each server has a registry of its own):

- ``aecnn_requests_total{kind}``: requests answered OK, by kind (FEATURE, IMAGE, PING, INFO);
- ``aecnn_errors_total{kind, reason}``: error replies and refused or cut connections, by the
  request kind (``-`` before a header was complete) and a short reason code;
- ``aecnn_request_seconds{kind}``: histogram of OK requests' server time (frame complete to
  reply written);
- ``aecnn_open_connections``: connections holding a slot.
"""

from __future__ import annotations

from aecnn.errors import AecnnError

BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.on, self.host, self.port = port is not None, host, port
        self.httpd = None
        if not self.on:
            return
        try:
            import prometheus_client as pc
        except ImportError:
            raise AecnnError("a metrics port needs prometheus-client: pip install "
                             "'aecnn[metrics]'") from None
        self.pc = pc
        self.registry = pc.CollectorRegistry()
        r = self.registry
        self.requests = pc.Counter("aecnn_requests", "Requests answered OK, by kind",
                                   ["kind"], registry=r)
        self.errors = pc.Counter("aecnn_errors", "Error replies and refused or cut "
                                 "connections, by request kind and reason", ["kind", "reason"],
                                 registry=r)
        self.latency = pc.Histogram("aecnn_request_seconds", "Server time of OK requests "
                                    "(frame complete to reply)", ["kind"], buckets=BUCKETS,
                                    registry=r)
        self.open = pc.Gauge("aecnn_open_connections", "Connections holding a slot",
                             registry=r)

    def start(self) -> None:
        if self.on and self.httpd is None:
            try:
                self.httpd, _ = self.pc.start_http_server(self.port, self.host,
                                                          registry=self.registry)
            except OSError as exc:
                raise AecnnError(f"cannot serve metrics on {self.host}:{self.port}: "
                                 f"{exc.strerror or exc}") from None
            self.port = self.httpd.server_port

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    def request(self, kind: int, seconds: float) -> None:
        if self.on:
            name = _name(kind)
            self.requests.labels(name).inc()
            self.latency.labels(name).observe(seconds)

    def error(self, kind: str, reason: str) -> None:
        if self.on:
            self.errors.labels(kind, reason).inc()

    def connections(self, n: int) -> None:
        if self.on:
            self.open.set(n)


def _name(kind: int) -> str:
    from aecnn.runtime.protocol import Kind

    try:
        return Kind(kind).name
    except ValueError:
        return str(kind)
