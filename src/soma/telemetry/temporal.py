"""Temporal instrumentation: trace propagation, activity counters and the backlog gauge.

Tracing uses temporalio's own ``TracingInterceptor`` on the client: it puts the caller's trace
context into the headers of every workflow start, signal and query, and because it is also a
worker interceptor, every worker built from that client inherits it, so workflows, child
workflows and activities join the trace of the request that started the project. Workflow spans
are created outside the workflow sandbox (through an extern function) and are zero-length by
design: a long-lived span is not replay-safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from temporalio import activity
from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.client import Interceptor as ClientInterceptor
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.exceptions import CancelledError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from soma.telemetry.metrics import TASK_QUEUE_BACKLOG, WORKER_ACTIVITIES

log = logging.getLogger("soma.telemetry")

BACKLOG_EVERY_S = 15.0
_TYPES = (
    ("workflow", TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW),
    ("activity", TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY),
)


def client_interceptors() -> list[ClientInterceptor]:
    """Interceptors for ``Client.connect``; workers built from the client inherit them."""
    return [TracingInterceptor()]


class ActivityMetrics(Interceptor):
    """Counts every activity this worker runs (local ones included) by name and outcome."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _CountingActivity(next)


class _CountingActivity(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        name = activity.info().activity_type
        try:
            result = await self.next.execute_activity(input)
        except (asyncio.CancelledError, CancelledError):
            WORKER_ACTIVITIES.labels(name, "cancelled").inc()
            raise
        except BaseException:
            WORKER_ACTIVITIES.labels(name, "error").inc()
            raise
        WORKER_ACTIVITIES.labels(name, "ok").inc()
        return result


async def sample_backlog(client: Client, task_queue: str) -> dict[str, int]:
    """The approximate backlog of ``task_queue`` per task type, also set on the gauge.

    Uses ``report_stats`` (Temporal server 1.25+); a server without it reports no stats, and
    the gauge is then left unset rather than showing a misleading zero.
    """
    found: dict[str, int] = {}
    for label, kind in _TYPES:
        request = DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=task_queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
            task_queue_type=kind,
            report_stats=True,
        )
        response = await client.workflow_service.describe_task_queue(request)
        if response.HasField("stats"):
            found[label] = response.stats.approximate_backlog_count
            TASK_QUEUE_BACKLOG.labels(task_queue, label).set(found[label])
    return found


@contextlib.asynccontextmanager
async def backlog_monitor(
    client: Client, task_queue: str, every_s: float = BACKLOG_EVERY_S
) -> AsyncIterator[None]:
    """Keep the backlog gauge fresh while the block runs (a worker or a gateway's lifetime)."""

    async def loop() -> None:
        while True:
            try:
                await sample_backlog(client, task_queue)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a gauge must never take the worker down
                log.debug("task queue backlog unavailable: %s", exc)
            await asyncio.sleep(every_s)

    task = asyncio.create_task(loop(), name="soma-backlog-monitor")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
