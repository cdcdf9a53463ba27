"""``agentflow view``: the web viewer over a store, on 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import asyncio
import secrets
import socket
from pathlib import Path
from typing import Annotated

import typer

from agentflow.cli.runs import StoreOption, opened_store
from agentflow.errors import ConfigError

DEFAULT_STORE = ".agentflow"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def view(  # noqa: PLR0917 - typer maps each parameter to an argument or option
    run_ids: Annotated[
        list[str] | None, typer.Argument(help="with --export: the runs to export (default: all)")
    ] = None,
    store: StoreOption = DEFAULT_STORE,
    host: Annotated[str, typer.Option("--host", help="address to bind; any but loopback requires a token")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option("--port", help="port to bind (0: any free port)")] = 8765,
    export: Annotated[
        Path | None,
        typer.Option("--export", help="write a static site of the pages to this folder (opens from file://)"),
    ] = None,
    bench: Annotated[str | None, typer.Option("--bench", help="with --export: the runs of this benchmark run")] = None,
) -> int:
    """Serve the read-only web viewer of the store's runs, traces, comparisons and benchmark reports."""
    try:
        import uvicorn

        from agentflow.viewer import create_app, export_site
    except ImportError as error:
        raise ConfigError(f"agentflow view needs the viewer extra: pip install 'agentflow[viewer]' ({error})") from None
    if export is None and (run_ids or bench):
        raise ConfigError("run ids and --bench go with --export")
    if export is not None:
        with opened_store(store) as trace_store:
            try:
                exported = asyncio.run(export_site(trace_store, export, run_ids or (), bench))
            except ValueError as error:
                raise ConfigError(str(error)) from None
        print(f"agentflow view: exported {len(exported)} runs to {export / 'index.html'}")
        return 0
    # Bound beyond this machine, anyone who can reach the port could read every trace: a random token guards it.
    token = None if host in LOOPBACK else secrets.token_urlsafe(24)
    with opened_store(store) as trace_store:
        config = uvicorn.Config(create_app(trace_store, token=token), host=host, port=port, log_level="warning")
        server = uvicorn.Server(config)
        # The socket is bound here, before serving, so the printed URL names the port actually bound (--port 0).
        try:
            family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
            listener = socket.socket(family, kind, proto)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(address)
            # Listening before the URL is printed: whoever reads it can connect at once (the connection waits in
            # the backlog until uvicorn accepts it), not only once the server has started.
            listener.listen(socket.SOMAXCONN)
        except OSError as error:
            raise ConfigError(f"cannot bind {host}:{port}: {error.strerror or error}") from None
        bound_host, bound_port = listener.getsockname()[:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        print(f"agentflow view: http://{shown}:{bound_port}/" + (f"?token={token}" if token else ""), flush=True)
        server.run(sockets=[listener])
    return 0


def register(app: typer.Typer) -> None:
    app.command()(view)
