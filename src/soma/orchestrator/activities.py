"""Activities: every side effect of a project (model calls, tool calls, commits, records).

Each activity takes an idempotency key. Temporal never re-runs an activity whose completion it
recorded, but a worker can die after the side effect and before Temporal hears of it; so each
activity first looks its key up in the store and returns the recorded result, and records the
result before returning. A completed call is therefore never repeated, even across crashes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from soma.agents.capsule_runner import build_task, execute_tool_call, finish_run
from soma.agents.driver import excerpt
from soma.agents.loop import AgentTask, ToolOutcome
from soma.constitution import Action, Constitution, Decision, Subject
from soma.constitution.audit import record_decision
from soma.constitution.redact import redact_value
from soma.errors import (
    ModelError,
    ModelHTTPError,
    ModelOutputError,
    ModelTimeout,
    NotFound,
    QuotaExceeded,
    SomaError,
)
from soma.identity.secret import load_secret_key
from soma.memory.factory import build_memory
from soma.memory.lessons import RunOutcome, record_lessons
from soma.memory.recall import recall_for_run
from soma.metering.budgets import ensure_budget, warn_if_crossed
from soma.metering.meter import Meter
from soma.metering.prices import load_prices
from soma.models.protocol import Model
from soma.models.types import Message, ModelRequest, ModelResponse, OutputSchema
from soma.orchestrator.tenant_tools import TenantTools
from soma.orchestrator.types import (
    CheckParams,
    CritiqueVerdict,
    FinishParams,
    FinishResult,
    JudgeParams,
    ModelCallParams,
    ModelFailure,
    PreparedCapsule,
    PrepareParams,
    RecordParams,
    ReviewDecision,
    ToolCallParams,
)
from soma.secrets import Vault, mask
from soma.settings import Settings
from soma.specs.library import Library
from soma.specs.models import Capsule
from soma.specs.tenant_libraries import TenantLibraries
from soma.store import DEFAULT_TENANT, Store
from soma.telemetry import instrument
from soma.telemetry.metrics import record_project
from soma.tools import ToolContext, ToolRegistry
from soma.tools.sandbox import Sandbox
from soma.workspace import AgentIdentity, Workspace

M = TypeVar("M", bound=BaseModel)
ModelFactory = Callable[[str], Model]

HEARTBEAT_EVERY_S = 1.0  # the SDK throttles to a fraction of the heartbeat timeout
CRITIQUE_SCHEMA = {
    "type": "object",
    "properties": {"ok": {"type": "boolean"}, "critique": {"type": "string"}},
    "required": ["ok", "critique"],
}
REVIEW_SCHEMA = {
    "type": "object",
    "properties": {"approved": {"type": "boolean"}, "comment": {"type": "string"}},
    "required": ["approved", "comment"],
}


class SomaActivities:
    """The activity implementations, bound to one worker's resources."""

    def __init__(
        self,
        settings: Settings,
        *,
        library: Library,
        registry: ToolRegistry,
        sandbox: Sandbox,
        store: Store,
        models: ModelFactory,
    ) -> None:
        self.settings = settings
        self.library = library
        self.libraries = TenantLibraries(settings.home, library)
        self.registry = registry
        self.sandbox = sandbox
        self.store = store
        self.vault = Vault(store, load_secret_key(settings))
        self.tools = TenantTools(registry, self.vault)
        self._models = models
        self._model_cache: dict[str, Model] = {}
        self._constitutions: dict[tuple[str, str], tuple[Library, Constitution]] = {}
        self._tenants: dict[str, str] = {}
        self.meter = Meter(store, load_prices(settings.prices_file))
        self.memory = build_memory(
            store,
            settings,
            constitution_for=lambda tenant: self.constitution(None, tenant),
            secret_values=lambda tenant: self.vault.reader(tenant).values(),
        )

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.prepare_capsule,
            self.call_model,
            self.call_tool,
            self.finish_capsule,
            self.auto_review,
            self.record,
            self.check_action,
            self.critique,
        ]

    def model(self, spec: str) -> Model:
        if spec not in self._model_cache:
            self._model_cache[spec] = self._models(spec)
        return self._model_cache[spec]

    def library_for(self, project_id: str) -> Library:
        """The project's tenant's library: the worker's base plus the tenant's installs."""
        return self.libraries.get(self.tenant(project_id))

    def constitution(self, capsule_ref: str | None, tenant: str = DEFAULT_TENANT) -> Constitution:
        """The platform constitution made stricter by the capsule's own policies, compiled
        once per tenant library (recompiled when an install changes that library)."""
        library = self.libraries.get(tenant)
        key = (tenant, capsule_ref or "")
        cached = self._constitutions.get(key)
        if cached is None or cached[0] is not library:
            base = library.constitution("default")
            policies = library.capsule(capsule_ref).policies if capsule_ref else []
            layers = [library.constitution(ref) for ref in policies]
            cached = (library, Constitution.compile(base, *layers))
            self._constitutions[key] = cached
        return cached[1]

    def _checked(
        self,
        key: str,
        project_id: str,
        node_id: str | None,
        capsule: str | None,
        subject: Subject,
        action: Action,
    ) -> Decision:
        """Constitution.check, with the decision appended to the audit chain under ``key``."""
        decision = instrument.decision(
            action.kind,
            action.tool,
            lambda: self.constitution(capsule, subject.tenant).check(subject, action),
        )
        if action.kind == "tool_call":
            evidence: Any = (
                decision.arguments if decision.arguments is not None else action.arguments
            )
        else:
            evidence = decision.text if decision.text is not None else action.text
        record_decision(
            self.store,
            tenant_id=subject.tenant,
            project_id=project_id,
            node_id=node_id,
            actor=f"{subject.persona} ({subject.capsule})",
            action_kind=action.kind,
            tool=action.tool,
            arguments=evidence,
            rule_id=decision.rule_id,
            effect=decision.effect,
            reason=decision.reason,
            key=key,
        )
        return decision

    def tenant(self, project_id: str) -> str:
        """The project's tenant, which every record and policy check of its work is scoped by.

        Projects never change tenant, so the answer is cached for the worker's lifetime. A
        project with no row yet (a bench or test driving the workflow directly) acts as the
        default tenant.
        """
        tenant = self._tenants.get(project_id)
        if tenant is None:
            try:
                tenant = self.store.project_tenant(project_id)
            except NotFound:
                return DEFAULT_TENANT
            self._tenants[project_id] = tenant
        return tenant

    def workspace(self, project_id: str) -> Workspace:
        return Workspace.open(self.settings.workspaces_dir, project_id)

    def _recall(
        self,
        tenant: str,
        capsule: Capsule,
        persona: str,
        inputs: Mapping[str, Any],
        project_id: str,
    ) -> list[tuple[str, str]]:
        """Memory's additions to the prompt; a memory that fails costs the run its recall, not
        the run itself."""
        try:
            return recall_for_run(self.memory, tenant, capsule, persona, inputs, project_id)
        except Exception:
            activity.logger.warning("memory recall failed for %s", capsule.ref, exc_info=True)
            return []

    def _learn(
        self, tenant: str, outcome: RunOutcome, key: str, project_id: str, node_id: str | None
    ) -> None:
        """Keep the lessons of a run's outcome (under the activity's key: once)."""
        try:
            record_lessons(
                self.memory, tenant, outcome, key=key, project_id=project_id, node_id=node_id
            )
        except Exception:
            activity.logger.warning("could not record lessons of %s", key, exc_info=True)

    @activity.defn(name="prepare_capsule")
    async def prepare_capsule(self, params: PrepareParams) -> PreparedCapsule:
        """Resolve capsule and persona and build the agent's task (reads knowledge files)."""
        p = params.params
        try:
            library = await asyncio.to_thread(self.library_for, p.project_id)
            registry = await self.tools.registry(await asyncio.to_thread(self.tenant, p.project_id))
            capsule = library.capsule(p.capsule)
            persona = library.persona(capsule.persona)
            tenant = await asyncio.to_thread(self.tenant, p.project_id)
            recalled = await asyncio.to_thread(
                self._recall, tenant, capsule, persona.name, p.inputs, p.project_id
            )
            task = build_task(
                capsule,
                persona,
                p.inputs,
                registry=registry,
                workspace=self.workspace(p.project_id),
                run_id=params.run_id,
                feedback=params.feedback,
                recalled=recalled,
            )
        except SomaError as exc:
            raise ApplicationError(str(exc), type=type(exc).__name__, non_retryable=True) from exc
        return PreparedCapsule(
            task=task,
            capsule=capsule.ref,
            persona=persona.name,
            review=capsule.review,
            max_wall_s=capsule.budget.max_wall_s,
            quick_tools=[t.name for t in task.tools if registry.is_quick(t.name)],
            role=persona.role,
            critique=capsule.critique,
            tenant=await asyncio.to_thread(self.tenant, p.project_id),
        )

    @activity.defn(name="call_model")
    async def call_model(self, params: ModelCallParams) -> ModelResponse | ModelFailure:
        """One model call. Transient provider errors are retried by Temporal with backoff;
        permanent ones come back as a ModelFailure so the agent run ends with the reason."""

        async def call() -> ModelResponse | ModelFailure:
            try:
                return await instrument.model_call(
                    params.model, self.model(params.model).complete(params.request)
                )
            except ModelHTTPError as exc:
                if exc.transient:
                    raise
                return ModelFailure(error=str(exc))
            except ModelTimeout:
                raise
            except ModelOutputError as exc:
                return ModelFailure(error=str(exc), invalid_reply=True)
            except ModelError as exc:
                return ModelFailure(error=str(exc))

        async def governed() -> ModelResponse | ModelFailure:
            # Before the call, not on replay: a budget used up stops new calls, while a call
            # already made (and paid for) is never taken back.
            refusal = await asyncio.to_thread(self._budget_refusal, params.project_id)
            if refusal is not None:
                return ModelFailure(error=refusal)
            reply = await call()
            if isinstance(reply, ModelFailure) or params.subject is None:
                return reply
            return await asyncio.to_thread(self._govern_output, params, reply)

        reply = await self._once(params.key, "model", params.project_id, governed, _model_reply)
        if isinstance(reply, ModelResponse):
            await asyncio.to_thread(self._meter_model, params, reply)
        await self._event(params.project_id, params.node_id, params.key, "model", _describe(reply))
        return reply

    def _budget_refusal(self, project_id: str) -> str | None:
        try:
            ensure_budget(self.store, self.tenant(project_id))
        except QuotaExceeded as exc:
            return str(exc)
        return None

    def _meter_model(self, params: ModelCallParams, reply: ModelResponse) -> None:
        tenant = self.tenant(params.project_id)
        self.meter.model_call(
            tenant,
            params.key,
            project_id=params.project_id,
            node_id=params.node_id,
            model=params.model,
            usage=reply.usage,
        )
        warn_if_crossed(self.store, tenant, params.project_id)

    def _govern_output(
        self, params: ModelCallParams, reply: ModelResponse
    ) -> ModelResponse | ModelFailure:
        """Model output leaves the agent only through the constitution: secrets are masked
        before it is stored or shown, and a denied output is withheld (the agent is asked
        again)."""
        assert params.subject is not None
        message = reply.message
        action = Action(kind="model_output", text=message.content or "")
        decision = self._checked(
            f"{params.key}/audit",
            params.project_id,
            params.node_id,
            params.capsule,
            params.subject,
            action,
        )
        if decision.effect == "deny":
            return ModelFailure(
                error=f"output withheld by the constitution: {decision.reason}", invalid_reply=True
            )
        calls = [
            call.model_copy(update={"arguments": redact_value(call.arguments)[0]})
            for call in message.tool_calls
        ]
        content = decision.text if decision.text is not None else message.content
        if message.content is None:
            content = None
        governed = message.model_copy(update={"content": content, "tool_calls": calls})
        return reply.model_copy(update={"message": governed})

    def _govern_message(self, params: FinishParams) -> Any:
        """A node's output is a message to the agents after it: checked and redacted before it
        is written to artifacts, stored or wired into another agent's inputs."""
        if params.subject is None or params.output is None:
            return params.output
        text = json.dumps(params.output, ensure_ascii=False, default=str)
        action = Action(kind="message", text=text)
        decision = self._checked(
            f"{params.key}/audit",
            params.project_id,
            params.node_id,
            params.capsule,
            params.subject,
            action,
        )
        if decision.effect == "deny":
            return {"withheld": f"output withheld by the constitution: {decision.reason}"}
        return redact_value(params.output)[0]

    @activity.defn(name="check_action")
    async def check_action(self, params: CheckParams) -> Decision:
        """Constitution.check for one tool call, audited once per key."""

        def check() -> Decision:
            return self._checked(
                params.key,
                params.project_id,
                params.node_id,
                params.capsule,
                params.subject,
                params.action,
            )

        decision = await self._once(
            params.key,
            "check",
            params.project_id,
            lambda: asyncio.to_thread(check),
            Decision.model_validate,
        )
        if decision.effect != "allow":
            message = f"{params.action.tool}: {decision.effect} — {decision.reason}"
            await self._event(params.project_id, params.node_id, params.key, "policy", message)
        return decision

    @activity.defn(name="critique")
    async def critique(self, params: JudgeParams) -> CritiqueVerdict:
        """A critic judges an output against the constitution's principles."""

        async def call() -> CritiqueVerdict:
            library = await asyncio.to_thread(self.library_for, params.project_id)
            spec = library.constitution("default")
            principles = "\n".join(f"- {p.id}: {p.text.strip()}" for p in spec.principles)
            request = ModelRequest(
                messages=[
                    Message.system(
                        "You are a critic. Judge the output below against these principles and "
                        "say ok=false only for a clear violation, naming the principle and what "
                        f"to change:\n{principles}"
                    ),
                    Message.user(str(params.output)[:8000]),
                ],
                output=OutputSchema(name="critique", json_schema=CRITIQUE_SCHEMA),
            )
            try:
                response = await instrument.model_call(
                    params.model, self.model(params.model).complete(request), purpose="critique"
                )
                return CritiqueVerdict.model_validate_json(response.message.content or "")
            except (ModelError, ValueError) as exc:
                return CritiqueVerdict(ok=True, critique=f"critic unavailable ({exc})")

        verdict = await self._once(
            params.key, "critique", params.project_id, call, CritiqueVerdict.model_validate
        )
        kind = "critique_ok" if verdict.ok else "critique_revise"
        await self._event(params.project_id, params.node_id, params.key, kind, verdict.critique)
        return verdict

    @activity.defn(name="call_tool")
    async def call_tool(self, params: ToolCallParams) -> ToolOutcome:
        """One tool call in the sandbox, heartbeating so a dead worker is noticed quickly."""
        identity = AgentIdentity(
            persona=params.persona, capsule=params.capsule.split("@")[0], run_id=params.run_id
        )
        tenant = await asyncio.to_thread(self.tenant, params.project_id)
        secrets = self.vault.reader(tenant)
        registry = await self.tools.registry(tenant)
        context = ToolContext(
            workspace=self.workspace(params.project_id),
            sandbox=self.sandbox,
            agent=identity,
            timeout_s=self.settings.sandbox_timeout_s,
            memory_mb=self.settings.sandbox_memory_mb,
            tenant_id=tenant,
            secrets=secrets,
            memory=self.memory,
            project_id=params.project_id,
        )
        task = AgentTask(
            run_id=params.run_id,
            system_prompt="",
            user_prompt="",
            tools=tuple(registry.specs(params.offered)),
        )

        async def call() -> ToolOutcome:
            started = time.monotonic()
            with instrument.tool_call(params.call.name) as finished:
                async with _heartbeating():
                    outcome = await execute_tool_call(params.call, task, registry, context)
                finished(outcome.ok)
            # Metered under the activity's key: a retry after a crash records it once.
            await asyncio.to_thread(
                functools.partial(
                    self.meter.tool_call,
                    tenant,
                    params.key,
                    project_id=params.project_id,
                    node_id=params.node_id,
                    tool=params.call.name,
                    seconds=time.monotonic() - started,
                )
            )
            # Whatever an adapter or a command printed, the tenant's secret values never reach
            # the model, the store or the event log.
            values = await asyncio.to_thread(secrets.values)
            return outcome.model_copy(update={"output": mask(outcome.output, values)})

        outcome = await self._once(
            params.key, "tool", params.project_id, call, ToolOutcome.model_validate
        )
        status = "ok" if outcome.ok else "error"
        detail = f"{outcome.name} → {status}: {excerpt(outcome.output)}"
        await self._event(params.project_id, params.node_id, params.key, "tool", detail)
        return outcome

    @activity.defn(name="finish_capsule")
    async def finish_capsule(self, params: FinishParams) -> FinishResult:
        """Write artifacts and commit as the agent: the run's mark in the workspace history."""

        async def call() -> FinishResult:
            library = await asyncio.to_thread(self.library_for, params.project_id)
            capsule = library.capsule(params.capsule)
            identity = AgentIdentity(
                persona=params.persona, capsule=capsule.name, run_id=params.run_id
            )
            output = await asyncio.to_thread(self._govern_message, params)
            artifacts, commit = await asyncio.to_thread(
                finish_run,
                capsule,
                self.workspace(params.project_id),
                identity,
                ok=params.ok,
                output=output,
                error=params.error,
            )
            return FinishResult(artifacts=artifacts, commit=commit, output=output)

        result = await self._once(
            params.key, "commit", params.project_id, call, FinishResult.model_validate
        )
        await asyncio.to_thread(self._meter_storage, params)
        if not params.ok:
            outcome = RunOutcome(
                capsule=params.capsule, persona=params.persona, ok=False, error=params.error
            )
            tenant = await asyncio.to_thread(self.tenant, params.project_id)
            await asyncio.to_thread(
                self._learn, tenant, outcome, params.key, params.project_id, params.node_id
            )
        return result

    def _meter_storage(self, params: FinishParams) -> None:
        """The workspace's size once the run has committed (its .git included: it is kept)."""
        workspace = self.workspace(params.project_id)
        size = sum(f.stat().st_size for f in workspace.path.rglob("*") if f.is_file())
        self.meter.storage(
            self.tenant(params.project_id),
            f"{params.key}/storage",
            project_id=params.project_id,
            node_id=params.node_id,
            size_bytes=size,
        )

    @activity.defn(name="auto_review")
    async def auto_review(self, params: JudgeParams) -> ReviewDecision:
        """``review: auto``: a reviewer persona judges the output against the capsule's purpose."""

        async def call() -> ReviewDecision:
            library = await asyncio.to_thread(self.library_for, params.project_id)
            capsule = library.capsule(params.capsule)
            reviewer = library.persona("code-reviewer")
            request = ModelRequest(
                messages=[
                    Message.system(
                        f"You are the {reviewer.role}. Judge whether the output below fulfils "
                        f"the task '{capsule.name}': {capsule.description.strip()} Approve "
                        "unless it is clearly wrong or empty; say why in one sentence."
                    ),
                    Message.user(str(params.output)[:8000]),
                ],
                output=OutputSchema(name="review", json_schema=REVIEW_SCHEMA),
            )
            try:
                response = await instrument.model_call(
                    params.model, self.model(params.model).complete(request), purpose="review"
                )
                verdict = ReviewDecision.model_validate_json(response.message.content or "")
            except (ModelError, ValueError) as exc:
                return ReviewDecision(
                    approved=True,
                    comment=f"auto-review unavailable ({exc}); approved",
                    reviewer="auto",
                )
            return verdict.model_copy(update={"reviewer": f"auto:{reviewer.name}"})

        return await self._once(
            params.key, "review", params.project_id, call, ReviewDecision.model_validate
        )

    @activity.defn(name="record")
    async def record(self, params: RecordParams) -> None:
        """Write an event and state changes to the store, once per key."""

        def write() -> None:
            tenant = self.tenant(params.project_id)
            if self.store.recall_result(params.key, tenant_id=tenant) is not None:
                return
            if params.project is not None:
                self.store.update_project(params.project_id, tenant_id=tenant, **params.project)
                if params.node_id is None:  # a project's own record: count final statuses
                    record_project(str(params.project.get("status", "")))
            if params.node_id is not None and params.node is not None:
                self.store.upsert_node(
                    params.project_id, params.node_id, tenant_id=tenant, **params.node
                )
            if params.node_id is not None and params.review_round is not None:
                decision = params.review_decision
                if decision is None:
                    self.store.open_review(
                        params.project_id, params.node_id, params.review_round, tenant_id=tenant
                    )
                else:
                    self.store.decide_review(
                        params.project_id,
                        params.node_id,
                        params.review_round,
                        approved=decision.approved,
                        comment=decision.comment,
                        decided_by=decision.reviewer,
                        tenant_id=tenant,
                    )
                    if not decision.approved and decision.comment:
                        self._learn_from_review(tenant, params, decision.comment)
            self.store.add_event(
                params.project_id,
                params.kind,
                params.message,
                node_id=params.node_id,
                data=params.data,
                tenant_id=tenant,
            )
            self.store.remember_result(
                params.key, "record", params.project_id, {}, tenant_id=tenant
            )

        await asyncio.to_thread(write)

    def _learn_from_review(self, tenant: str, params: RecordParams, comment: str) -> None:
        """A reviewer's rejection is the clearest lesson a capsule gets: keep it for its next
        runs (the gate's record key makes it once per decision)."""
        assert params.node_id is not None
        node = self.store.get_node(params.project_id, params.node_id, tenant_id=tenant)
        if node.capsule and node.persona:
            outcome = RunOutcome(
                capsule=node.capsule, persona=node.persona, ok=True, review_comment=comment
            )
            self._learn(tenant, outcome, params.key, params.project_id, params.node_id)

    async def _event(
        self, project_id: str, node_id: str | None, key: str, kind: str, message: str
    ) -> None:
        """A progress event for `soma logs`, written once per activity key."""

        def write() -> None:
            tenant = self.tenant(project_id)
            marker = f"{key}#event"
            if self.store.recall_result(marker, tenant_id=tenant) is None:
                self.store.add_event(
                    project_id, kind, message, node_id=node_id, data={"key": key}, tenant_id=tenant
                )
                self.store.remember_result(marker, "event", project_id, {}, tenant_id=tenant)

        await asyncio.to_thread(write)

    async def _once(
        self,
        key: str,
        kind: str,
        project_id: str,
        call: Callable[[], Coroutine[Any, Any, M]],
        parse: Callable[[dict[str, Any]], M],
    ) -> M:
        tenant = await asyncio.to_thread(self.tenant, project_id)
        recorded = await asyncio.to_thread(self.store.recall_result, key, tenant_id=tenant)
        if recorded is not None:
            activity.logger.info("replaying recorded result for %s", key)
            return parse(recorded)
        result = await call()
        await asyncio.to_thread(
            functools.partial(
                self.store.remember_result,
                key,
                kind,
                project_id,
                result.model_dump(mode="json"),
                tenant_id=tenant,
            )
        )
        return result


def _describe(reply: ModelResponse | ModelFailure) -> str:
    if isinstance(reply, ModelFailure):
        return f"model failed: {reply.error}"
    calls = reply.message.tool_calls
    if calls:
        return "calls " + ", ".join(call.name for call in calls)
    tokens = reply.usage.total_tokens
    return f"answered ({tokens} tokens): {excerpt(reply.message.content or '')}"


def _model_reply(data: dict[str, Any]) -> ModelResponse | ModelFailure:
    return (
        ModelFailure.model_validate(data) if "error" in data else ModelResponse.model_validate(data)
    )


@contextlib.asynccontextmanager
async def _heartbeating() -> Any:
    if activity.info().is_local:  # quick tools run as local activities, which cannot heartbeat
        yield
        return

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(HEARTBEAT_EVERY_S)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
