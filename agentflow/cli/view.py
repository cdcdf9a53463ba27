"""``agentflow view``: the web viewer over a store, on 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import secrets
import socket
from typing import Annotated

import typer

from agentflow.cli.runs import StoreOption, opened_store
from agentflow.errors import ConfigError

DEFAULT_STORE = ".agentflow"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def view(
    store: StoreOption = DEFAULT_STORE,
    host: Annotated[str, typer.Option("--host", help="address to bind; any but loopback requires a token")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option("--port", help="port to bind (0: any free port)")] = 8765,
) -> int:
    """Serve the read-only web viewer of the store's runs, traces, comparisons and benchmark reports."""
    try:
        import uvicorn

        from agentflow.viewer import create_app
    except ImportError as error:
        raise ConfigError(f"agentflow view needs the viewer extra: pip install 'agentflow[viewer]' ({error})") from None
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
        except OSError as error:
            raise ConfigError(f"cannot bind {host}:{port}: {error.strerror or error}") from None
        bound_host, bound_port = listener.getsockname()[:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        print(f"agentflow view: http://{shown}:{bound_port}/" + (f"?token={token}" if token else ""), flush=True)
        server.run(sockets=[listener])
    return 0


def register(app: typer.Typer) -> None:
    app.command()(view)
