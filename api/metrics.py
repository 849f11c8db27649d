"""Prometheus metrics of one API process: requests, latencies, appends, rejections, lag, and
followers that cannot advance.

Routes are labelled by their template (`/v1/cases/{case}/plan`), never by the raw path, so
ids stay out of the metrics and their number stays bounded; no header is ever a label.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ledger.access import READ_TOPIC
from ledger.leader import Stuck
from ledger.stream import ENTRY_TOPIC
from projections.follower import Follower

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
disable_created_metrics()  # type: ignore[no-untyped-call]  # `_created` series double the output and help no dashboard
_LAG_CAP = 100_000  # lag is counted up to this many notifications, so a scrape stays cheap


class Metrics:
    """The metrics registry of one application, and the middleware that feeds it."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, follower: Follower, stuck: Callable[[], list[Stuck]] = list) -> None:
        self.follower = follower
        self.stuck = stuck  # the followers that cannot advance, wherever they run
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "accord_http_requests",
            "HTTP requests answered, by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "accord_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )
        self.appends = Counter(
            "accord_appends", "Statements appended to the ledger", registry=self.registry
        )
        self.rejections = Counter(
            "accord_rejections",
            "Requests refused with a problem, by its stable code",
            ["code"],
            registry=self.registry,
        )
        self.follower_lag = Gauge(
            "accord_follower_lag",
            "Log notifications the projections have not applied yet",
            registry=self.registry,
        )
        self.followers_stuck = Gauge(
            "accord_followers_stuck",
            "Followers (projections, sealer) whose steps keep failing: /healthz says degraded",
            registry=self.registry,
        )
        self.stuck_position = Gauge(
            "accord_follower_stuck_position",
            "Where a follower that cannot advance has stopped (projections: notification id;"
            " sealer: log size), by follower",
            ["follower"],
            registry=self.registry,
        )
        self.stuck_failures = Gauge(
            "accord_follower_failures",
            "Failed steps in a row of a follower that cannot advance, by follower",
            ["follower"],
            registry=self.registry,
        )

    def lag(self) -> int:
        """How many entries and recorded reads the projections have still to apply."""
        caught_up = self.follower.caught_up_to()
        pending = self.follower.ledger.recorder.select_notifications(
            start=caught_up + 1, limit=_LAG_CAP, topics=[ENTRY_TOPIC, READ_TOPIC]
        )
        return len(pending)

    def render(self) -> bytes:
        """The Prometheus text exposition (blocking: it measures the follower's lag)."""
        self.follower_lag.set(self.lag())
        stuck = self.stuck()
        self.followers_stuck.set(len(stuck))
        # Only followers stuck now have these series: a recovered one's disappear.
        self.stuck_position.clear()
        self.stuck_failures.clear()
        for follower in stuck:
            self.stuck_position.labels(follower.follower).set(follower.position)
            self.stuck_failures.labels(follower.follower).set(follower.failures)
        return generate_latest(self.registry)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        response = await handler(request)
        self.latency.labels(route).observe(time.perf_counter() - started)
        self.requests.labels(request.method, route, str(response.status)).inc()
        code = response.headers.get("Accord-Problem")
        if code is not None:
            self.rejections.labels(code).inc()
        return response
