"""Durable workflows: one ProjectWorkflow per project, one CapsuleWorkflow per plan node.

Workflow code is deterministic: it holds the agent loop (``soma.agents.loop`` is pure) and the
DAG scheduling, and every side effect is an activity with an idempotency key derived from the
project, node, attempt, review round and step, so a replay on another worker asks for the same
keys.

Short effects (model calls, store records, prepare and commit) are *local* activities: they run
in the worker that runs the workflow, without a round trip through the server per call, which is
most of the engine's overhead. A crash re-runs a local activity whose result was not yet in the
history, and the store lookup by key turns that into a replay of the recorded result. Tool calls
stay regular activities: they can run long, heartbeat, and move to another worker when one dies.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from soma.agents.loop import (
        AgentLoop,
        AgentState,
        CallModel,
        CallTools,
        Fail,
        Finish,
        ToolOutcome,
    )
    from soma.constitution import Action, Decision
    from soma.models.types import ModelResponse, ToolCall, Usage
    from soma.orchestrator.types import (
        CapsuleParams,
        CheckParams,
        CritiqueVerdict,
        FinishParams,
        FinishResult,
        JudgeParams,
        ModelCallParams,
        ModelFailure,
        NodeResult,
        NodeState,
        NodeUpdate,
        PreparedCapsule,
        PrepareParams,
        ProjectParams,
        ProjectState,
        RecordParams,
        ReviewDecision,
        ToolCallParams,
    )
    from soma.orchestrator.wiring import resolve_inputs
    from soma.specs.models import PlanNode

QUICK = timedelta(seconds=60)
MODEL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=5,
)
TOOL_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=5)
MAX_CRITIQUE_ROUNDS = 2
GATES_PER_ATTEMPT = 100


@workflow.defn(name="CapsuleWorkflow")
class CapsuleWorkflow:
    """One agent carrying out one capsule, under the constitution, with review gates."""

    def __init__(self) -> None:
        self._decision: ReviewDecision | None = None
        self._phase = "starting"
        self._gates = 0

    @workflow.signal
    def review(self, decision: ReviewDecision) -> None:
        self._decision = decision

    @workflow.query
    def phase(self) -> str:
        return self._phase

    @workflow.run
    async def run(self, params: CapsuleParams) -> NodeResult:
        usage = Usage()
        steps = 0
        feedback = params.feedback
        for round_no in range(params.max_review_rounds + 1):
            prefix = f"{params.project_id}/{params.node_id}/a{params.attempt}/r{round_no}"
            prepared: PreparedCapsule = await workflow.execute_local_activity(
                "prepare_capsule",
                PrepareParams(params=params, run_id=_run_id(params, round_no), feedback=feedback),
                result_type=PreparedCapsule,
                start_to_close_timeout=QUICK,
            )
            self._phase = "working"
            loop = AgentLoop(prepared.task)
            state = await self._agent(params, prepared, prefix, loop, loop.start())
            if prepared.critique:
                state = await self._critique(params, prepared, prefix, loop, state)
            usage = usage + state.usage
            steps += state.steps
            ok = state.failure is None
            finish: FinishResult = await workflow.execute_local_activity(
                "finish_capsule",
                FinishParams(
                    key=f"{prefix}/finish",
                    project_id=params.project_id,
                    capsule=prepared.capsule,
                    persona=prepared.persona,
                    run_id=prepared.task.run_id,
                    ok=ok,
                    output=state.output,
                    error=state.failure,
                    node_id=params.node_id,
                    subject=prepared.subject(),
                ),
                result_type=FinishResult,
                start_to_close_timeout=QUICK,
            )
            result = NodeResult(
                node_id=params.node_id,
                ok=ok,
                persona=prepared.persona,
                output=finish.output,
                error=state.failure,
                failure_kind=state.failure_kind,
                steps=steps,
                usage=usage,
                commit=finish.commit,
                artifacts=finish.artifacts,
                review_rounds=round_no,
            )
            if not ok or prepared.review == "none":
                return result
            decision = await self._review(params, prepared, finish.output, prefix, finish.commit)
            if decision.approved:
                return result
            feedback = decision.comment or "rejected without a comment"
        return result.model_copy(
            update={
                "ok": False,
                "error": f"rejected by review {params.max_review_rounds + 1} times: {feedback}",
                "failure_kind": "rejected",
            }
        )

    async def _agent(
        self,
        params: CapsuleParams,
        prepared: PreparedCapsule,
        prefix: str,
        loop: AgentLoop,
        state: AgentState,
    ) -> AgentState:
        timeouts = params.timeouts
        started = workflow.now()
        while True:
            spent = (workflow.now() - started).total_seconds()
            if spent > prepared.max_wall_s and state.failure is None and state.final_text is None:
                state = loop.on_budget_exceeded(
                    state,
                    f"wall-time budget exceeded: {spent:.0f} s of {prepared.max_wall_s:.0f} s",
                )
            action = loop.next_action(state)
            if isinstance(action, CallModel):
                reply = await workflow.execute_local_activity(
                    "call_model",
                    ModelCallParams(
                        key=f"{prefix}/model/{action.step}",
                        project_id=params.project_id,
                        node_id=params.node_id,
                        model=params.model,
                        request=action.request,
                        subject=prepared.subject(),
                        capsule=prepared.capsule,
                    ),
                    result_type=ModelResponse | ModelFailure,  # type: ignore[arg-type]
                    start_to_close_timeout=timedelta(seconds=timeouts.model_s),
                    retry_policy=MODEL_RETRY,
                )
                if isinstance(reply, ModelFailure) and reply.invalid_reply:
                    state = loop.on_invalid_reply(state, reply.error)
                elif isinstance(reply, ModelFailure):
                    state = loop.on_model_error(state, reply.error)
                else:
                    state = loop.on_model_response(state, reply)
            elif isinstance(action, CallTools):
                outcomes = await asyncio.gather(
                    *(self._tool(params, prepared, prefix, action, call) for call in action.calls)
                )
                state = loop.on_tool_results(state, list(outcomes))
            else:
                assert isinstance(action, Finish | Fail)
                return state

    async def _critique(
        self,
        params: CapsuleParams,
        prepared: PreparedCapsule,
        prefix: str,
        loop: AgentLoop,
        state: AgentState,
    ) -> AgentState:
        """The constitutional-AI loop: a critic judges the answer against the principles and
        the agent revises, for a bounded number of rounds; every verdict is recorded."""
        for round_no in range(MAX_CRITIQUE_ROUNDS):
            if state.failure is not None:
                return state
            verdict: CritiqueVerdict = await workflow.execute_local_activity(
                "critique",
                JudgeParams(
                    key=f"{prefix}/critique/{round_no}",
                    project_id=params.project_id,
                    node_id=params.node_id,
                    capsule=prepared.capsule,
                    model=params.model,
                    output=state.output,
                ),
                result_type=CritiqueVerdict,
                start_to_close_timeout=timedelta(seconds=params.timeouts.model_s),
                retry_policy=MODEL_RETRY,
            )
            if verdict.ok:
                return state
            state = loop.on_critique(state, verdict.critique)
            state = await self._agent(params, prepared, prefix + f"/rev{round_no}", loop, state)
        return state

    async def _tool(
        self,
        params: CapsuleParams,
        prepared: PreparedCapsule,
        prefix: str,
        action: CallTools,
        call: ToolCall,
    ) -> ToolOutcome:
        """Check the call against the constitution, then run it: quick in-process tools as
        local activities, the rest as heartbeating activities."""
        key = f"{prefix}/{action.key(call)}"
        decision: Decision = await workflow.execute_local_activity(
            "check_action",
            CheckParams(
                key=f"{key}/check",
                project_id=params.project_id,
                node_id=params.node_id,
                capsule=prepared.capsule,
                subject=prepared.subject(),
                action=Action(kind="tool_call", tool=call.name, arguments=call.arguments),
            ),
            result_type=Decision,
            start_to_close_timeout=QUICK,
        )
        if decision.effect == "deny":
            return _refusal(call, f"refused by the constitution: {decision.reason}", decision)
        if decision.effect == "require_approval":
            gate = await self._gate(
                params,
                prepared,
                f"{prepared.capsule} asks to run {call.name}: {decision.reason}",
                {"tool": call.name, "arguments": decision.arguments or call.arguments},
            )
            if not gate.approved:
                return _refusal(call, f"a reviewer refused this call: {gate.comment}", decision)
        if decision.effect == "redact" and decision.arguments is not None:
            call = call.model_copy(update={"arguments": decision.arguments})
        args = ToolCallParams(
            key=key,
            project_id=params.project_id,
            node_id=params.node_id,
            capsule=prepared.capsule,
            persona=prepared.persona,
            run_id=prepared.task.run_id,
            offered=[spec.name for spec in prepared.task.tools],
            call=call,
        )
        timeout = timedelta(seconds=params.timeouts.tool_s)
        outcome: ToolOutcome
        if call.name in prepared.quick_tools:
            outcome = await workflow.execute_local_activity(
                "call_tool",
                args,
                result_type=ToolOutcome,
                start_to_close_timeout=timeout,
                retry_policy=TOOL_RETRY,
            )
        else:
            outcome = await workflow.execute_activity(
                "call_tool",
                args,
                result_type=ToolOutcome,
                start_to_close_timeout=timeout,
                heartbeat_timeout=timedelta(seconds=params.timeouts.tool_heartbeat_s),
                retry_policy=TOOL_RETRY,
            )
        return outcome

    async def _review(
        self,
        params: CapsuleParams,
        prepared: PreparedCapsule,
        output: Any,
        prefix: str,
        commit: str | None,
    ) -> ReviewDecision:
        if prepared.review == "auto":
            verdict: ReviewDecision = await workflow.execute_local_activity(
                "auto_review",
                JudgeParams(
                    key=f"{prefix}/review",
                    project_id=params.project_id,
                    node_id=params.node_id,
                    capsule=prepared.capsule,
                    model=params.model,
                    output=output,
                ),
                result_type=ReviewDecision,
                start_to_close_timeout=timedelta(seconds=params.timeouts.model_s),
                retry_policy=MODEL_RETRY,
            )
            return verdict
        # What is under review goes on the run's record now, not when it ends: the reviewer
        # reads this attempt's output and commit.
        artifact = {"output": output if isinstance(output, dict) else None, "commit_sha": commit}
        return await self._gate(
            params, prepared, f"{prepared.capsule} waits for a human review", {}, artifact
        )

    async def _gate(
        self,
        params: CapsuleParams,
        prepared: PreparedCapsule,
        message: str,
        data: dict[str, Any],
        artifact: dict[str, Any] | None = None,
    ) -> ReviewDecision:
        """A human gate: record it, tell the project, wait for the ``review`` signal.

        Gates are numbered per node across attempts (100 per attempt), the number the store
        and the review commands use, so every output review and tool approval has its own.
        """
        gate = (params.attempt - 1) * GATES_PER_ATTEMPT + self._gates
        self._gates += 1
        key = f"{params.project_id}/{params.node_id}/gate{gate}"
        self._phase = "waiting_review"
        self._decision = None
        await _record(
            RecordParams(
                key=f"{key}/open",
                project_id=params.project_id,
                node_id=params.node_id,
                kind="review_requested",
                message=message,
                data={"gate": gate, **data},
                # The persona too: a reviewer should see who did the work before the run ends.
                node={"status": "waiting_review", "persona": prepared.persona, **(artifact or {})},
                review_round=gate,
            )
        )
        await _tell_parent(
            NodeUpdate(
                node_id=params.node_id,
                status="waiting_review",
                message=message,
                review_round=gate,
            )
        )
        await workflow.wait_condition(lambda: self._decision is not None)
        decision = self._decision
        assert decision is not None
        self._phase = "working"
        verdict = "approved" if decision.approved else "rejected"
        await _tell_parent(
            NodeUpdate(
                node_id=params.node_id,
                status="running",
                message=f"review {verdict}: {decision.comment}",
            )
        )
        await _record(
            RecordParams(
                key=f"{key}/decided",
                project_id=params.project_id,
                node_id=params.node_id,
                kind=f"review_{verdict}",
                message=f"{decision.reviewer} {verdict}: {decision.comment}",
                data=decision.model_dump(),
                node={"status": "running"},
                review_round=gate,
                review_decision=decision,
            )
        )
        return decision


def _refusal(call: ToolCall, text: str, decision: Decision) -> ToolOutcome:
    rule = f" (rule {decision.rule_id})" if decision.rule_id else ""
    return ToolOutcome(call_id=call.id, name=call.name, ok=False, output=f"{text}{rule}")


@workflow.defn(name="ProjectWorkflow")
class ProjectWorkflow:
    """Runs a plan: ready nodes in parallel up to a limit, outputs wired into later inputs."""

    def __init__(self) -> None:
        self._state: ProjectState | None = None
        self._children: dict[str, workflow.ChildWorkflowHandle[Any, Any]] = {}
        self._waiting: dict[str, int | None] = {}

    @workflow.query
    def state(self) -> ProjectState:
        assert self._state is not None
        return self._state

    @workflow.signal
    async def review(self, node_id: str, decision: ReviewDecision) -> None:
        """Forward a review decision to the node's capsule workflow once it waits for one.

        A decision can arrive before the node has told this workflow it is waiting (the store
        shows the gate first), so it waits for that; a decision for a round already decided or
        for a node that has finished (a duplicate click, a stale console) is dropped.
        """
        if self._state is None or node_id not in self._state.nodes:
            workflow.logger.warning("review for unknown node %s ignored", node_id)
            return
        node = self._state.nodes[node_id]

        def settled() -> bool:
            waiting = self._waiting.get(node_id)
            if node.status in _FINAL:
                return True
            return waiting is not None and (decision.round is None or waiting >= decision.round)

        await workflow.wait_condition(settled)
        waiting = self._waiting.get(node_id)
        child = self._children.get(node_id)
        if child is None or waiting is None or decision.round not in (None, waiting):
            workflow.logger.warning("review for %s ignored: it is not waiting for it", node_id)
            return
        self._waiting[node_id] = None
        node.status = "running"
        await child.signal(CapsuleWorkflow.review, decision)

    @workflow.signal
    def node_update(self, update: NodeUpdate) -> None:
        """Capsule workflows report phase changes (waiting for review) for the live state."""
        if self._state is not None and update.node_id in self._state.nodes:
            node = self._state.nodes[update.node_id]
            node.status = update.status  # type: ignore[assignment]
            node.last_event = update.message
            self._waiting[update.node_id] = update.review_round

    @workflow.run
    async def run(self, params: ProjectParams) -> ProjectState:
        nodes = {node.id: node for node in params.plan.nodes}
        self._state = ProjectState(
            project_id=params.project_id,
            nodes={n.id: NodeState(node_id=n.id, capsule=n.capsule) for n in params.plan.nodes},
        )
        await self._record(
            params, "project_started", f"{len(nodes)} nodes", project={"status": "running"}
        )
        try:
            await self._schedule(params, nodes)
        except asyncio.CancelledError:
            await self._finish(params, "cancelled", "cancelled on request")
            raise
        failed = [s.node_id for s in self._state.nodes.values() if s.status != "succeeded"]
        if self._state.error is None and failed:
            self._state.error = f"nodes not completed: {', '.join(failed)}"
        await self._finish(params, "failed" if failed else "succeeded", self._state.error or "")
        return self._state

    async def _schedule(self, params: ProjectParams, nodes: dict[str, PlanNode]) -> None:
        assert self._state is not None
        outputs: dict[str, Any] = {}
        waiting = list(nodes)
        running: dict[str, asyncio.Task[NodeResult]] = {}
        stop = False
        while waiting or running:
            if not stop:
                stop = self._over_budget(params)
            for node_id in list(waiting):
                deps = nodes[node_id].depends_on
                if any(self._state.nodes[d].status in _DEAD for d in deps):
                    waiting.remove(node_id)
                    await self._set(params, node_id, "skipped", "a dependency did not succeed")
                elif stop:
                    continue
                elif len(running) < params.concurrency and all(
                    self._state.nodes[d].status == "succeeded" for d in deps
                ):
                    waiting.remove(node_id)
                    inputs = resolve_inputs(nodes[node_id].inputs, outputs)
                    running[node_id] = asyncio.ensure_future(
                        self._run_node(params, nodes[node_id], inputs)
                    )
            if not running:
                if stop:
                    for node_id in waiting:
                        await self._set(params, node_id, "skipped", self._state.error or "stopped")
                break
            done, _ = await workflow.wait(
                list(running.values()), return_when=asyncio.FIRST_COMPLETED
            )
            for node_id, task in list(running.items()):
                if task in done:
                    del running[node_id]
                    result = task.result()
                    if result.ok:
                        outputs[node_id] = result.output
                    elif self._retry(params, nodes[node_id]):
                        self._state.nodes[node_id].status = "pending"
                        waiting.append(node_id)
                    else:
                        stop = stop or nodes[node_id].on_failure != "continue"
                        self._state.error = self._state.error or f"{node_id}: {result.error}"

    def _retry(self, params: ProjectParams, node: PlanNode) -> bool:
        """Whether a failed node runs again: its own policy, or the project-wide retries."""
        assert self._state is not None
        attempts = self._state.nodes[node.id].attempts
        allowed = node.retries if node.on_failure == "retry" else params.node_retries
        return attempts <= allowed

    async def _run_node(
        self, params: ProjectParams, node: PlanNode, inputs: dict[str, Any]
    ) -> NodeResult:
        assert self._state is not None
        state = self._state.nodes[node.id]
        state.attempts += 1
        await self._set(params, node.id, "running", f"attempt {state.attempts}", started=True)
        child = await workflow.start_child_workflow(
            CapsuleWorkflow.run,
            CapsuleParams(
                project_id=params.project_id,
                node_id=node.id,
                capsule=node.capsule,
                inputs=inputs,
                model=params.model,
                attempt=state.attempts,
                feedback=state.error if state.attempts > 1 else None,
                max_review_rounds=params.max_review_rounds,
                timeouts=params.timeouts,
            ),
            id=f"{workflow.info().workflow_id}.{node.id}.{state.attempts}",
        )
        self._children[node.id] = child
        try:
            result: NodeResult = await child
        except ChildWorkflowError as exc:
            result = NodeResult(node_id=node.id, ok=False, error=_cause(exc))
        finally:
            self._children.pop(node.id, None)
        state.usage = state.usage + result.usage
        self._state.usage = self._state.usage + result.usage
        state.commit = result.commit or state.commit
        state.error = result.error
        status = "succeeded" if result.ok else "failed"
        detail = f"{result.steps} steps, commit {(result.commit or '-')[:12]}"
        await self._set(
            params,
            node.id,
            status,
            detail if result.ok else f"{result.error}",
            finished=True,
            extra={
                "steps": result.steps,
                "input_tokens": state.usage.input_tokens,
                "output_tokens": state.usage.output_tokens,
                "commit_sha": state.commit,
                "output": result.output if isinstance(result.output, dict) else None,
                "error": result.error,
                **({"persona": result.persona} if result.persona else {}),
            },
            # Running totals, so watchers see the project's usage grow rather than at its end.
            project={
                "usage_input_tokens": self._state.usage.input_tokens,
                "usage_output_tokens": self._state.usage.output_tokens,
            },
        )
        return result

    def _over_budget(self, params: ProjectParams) -> bool:
        assert self._state is not None
        limit = params.max_project_tokens
        if limit is None or self._state.usage.total_tokens <= limit:
            return False
        self._state.error = self._state.error or (
            f"BudgetExceeded: project used {self._state.usage.total_tokens} tokens of {limit}"
        )
        return True

    async def _set(
        self,
        params: ProjectParams,
        node_id: str,
        status: str,
        message: str,
        *,
        started: bool = False,
        finished: bool = False,
        extra: dict[str, Any] | None = None,
        project: dict[str, Any] | None = None,
    ) -> None:
        assert self._state is not None
        node = self._state.nodes[node_id]
        fields: dict[str, Any] = {
            "status": status,
            "last_event": message,
            "attempts": node.attempts,
            "capsule": node.capsule,
        }
        now = workflow.now()
        if started:
            fields["started_at"] = node.started_at = now
            node.finished_at = None
        if finished:
            fields["finished_at"] = node.finished_at = now
        fields.update(extra or {})
        await _record(
            RecordParams(
                key=f"{params.project_id}/{node_id}/a{node.attempts}/{status}",
                project_id=params.project_id,
                node_id=node_id,
                kind=f"node_{status}",
                message=message,
                node=fields,
                project=project,
            )
        )
        # Only now, so no dependent can start before this node's record is in the store.
        node.status = status  # type: ignore[assignment]
        node.last_event = message

    async def _record(
        self, params: ProjectParams, kind: str, message: str, project: dict[str, Any]
    ) -> None:
        await _record(
            RecordParams(
                key=f"{params.project_id}/{kind}",
                project_id=params.project_id,
                kind=kind,
                message=message,
                project=project,
            )
        )

    async def _finish(self, params: ProjectParams, status: str, message: str) -> None:
        assert self._state is not None
        self._state.status = status  # type: ignore[assignment]
        for node in self._state.nodes.values():
            if status == "cancelled" and node.status in ("pending", "running", "waiting_review"):
                node.status = "cancelled"
        await self._record(
            params,
            f"project_{status}",
            message,
            project={
                "status": status,
                "error": self._state.error,
                "usage_input_tokens": self._state.usage.input_tokens,
                "usage_output_tokens": self._state.usage.output_tokens,
                "finished_at": workflow.now(),
            },
        )


_DEAD = ("failed", "skipped", "cancelled")
_FINAL = ("succeeded", *_DEAD)


async def _record(params: RecordParams) -> None:
    await workflow.execute_local_activity(
        "record", params, start_to_close_timeout=timedelta(seconds=30)
    )


async def _tell_parent(update: NodeUpdate) -> None:
    parent = workflow.info().parent
    if parent is None:
        return
    handle = workflow.get_external_workflow_handle(parent.workflow_id, run_id=parent.run_id)
    await handle.signal("node_update", update)


def _run_id(params: CapsuleParams, round_no: int) -> str:
    """The agent run's id (commit trailer): node, and attempt/round when not the first."""
    run_id = params.node_id
    if params.attempt > 1:
        run_id += f".a{params.attempt}"
    return f"{run_id}.r{round_no}"


def _cause(exc: BaseException) -> str:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return str(exc)
