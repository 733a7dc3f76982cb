"""`soma serve`: the HTTP gateway (REST API, OpenAI-compatible endpoints), with the durable
engine and a worker in the same process unless told otherwise."""

from __future__ import annotations

from typing import Annotated

import typer
import uvicorn

from soma.cli.common import console, friendly_errors, load_library
from soma.gateway.app import build_services, create_app
from soma.settings import Settings
from soma.telemetry import init_process


@friendly_errors
def serve(
    host: Annotated[
        str | None, typer.Option(help="Bind address. Default: SOMA_GATEWAY_HOST.")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port. Default: SOMA_GATEWAY_PORT.")] = None,
    worker: Annotated[
        bool, typer.Option(help="Run a worker in this process (off: use `soma worker`s).")
    ] = True,
    engine: Annotated[
        bool,
        typer.Option(
            help="Connect to the durable engine (off: a model gateway only; project changes "
            "answer 503)."
        ),
    ] = True,
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = False,
) -> None:
    """Serve the API at http://HOST:PORT (OpenAPI docs at /docs, OpenAI SDKs at /v1)."""
    settings = Settings()
    init_process(settings)
    services = build_services(settings, library=load_library(settings))
    if not services.store.list_tenants():
        console.print(
            "[yellow]no tenants yet:[/] create one and a key with\n"
            "  soma admin create-tenant acme\n"
            "  soma admin create-user acme you@example.com --role admin\n"
            "  soma admin create-key acme you@example.com --name laptop"
        )
    if settings.model.split(":")[0] == "local":
        # Loading weights takes seconds; done now, it cannot stall the event loop (and every
        # request and workflow task on it) the first time a chat or an agent needs the model.
        with console.status("loading the embedded model…"):
            services.models(settings.model)
    bind_host = host or settings.gateway_host
    bind_port = port or settings.gateway_port
    console.print(
        f"soma gateway on http://{bind_host}:{bind_port} — API docs /docs, OpenAI base URL /v1"
    )
    uvicorn.run(
        create_app(services, engine=engine, worker=worker and engine),
        host=bind_host,
        port=bind_port,
        loop="uvloop",
        http="httptools",
        access_log=access_log,
        server_header=False,
        log_level="info",
        # uvicorn's records go to the root logger, formatted like all others (telemetry.logs).
        log_config=None,
    )
