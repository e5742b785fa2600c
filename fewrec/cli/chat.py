"""`fewrec chat`: the Gradio chat page on the configured data and model."""

from __future__ import annotations

from typing import Annotated

import typer

from fewrec.cli.common import build_pipeline, console, load_settings
from fewrec.cli.options import ConfigOption, DatasetOption, DuplicatesOption, FormatOption
from fewrec.data.errors import FewrecError


def chat(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default from Settings: 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from Settings: 7860).")] = None,
    share: Annotated[
        bool, typer.Option(help="Also open a public gradio.live link (off by default).")
    ] = False,
    config: ConfigOption = None,
    dataset: DatasetOption = None,
    format: FormatOption = "auto",
    duplicates: DuplicatesOption = None,
) -> None:
    """Start the Gradio chat page on the configured data and model."""
    from fewrec.agent.chat import ChatAgent
    from fewrec.agent.recommender import Recommender
    from fewrec.ui.app import launch

    settings = load_settings(config, dataset, format, duplicates)
    if host is not None:
        settings.chat.host = host
    if port is not None:
        settings.chat.port = port
    check_port_free(settings.chat.host, settings.chat.port)  # before the minute of loading
    console.print("[dim]loading the data, the index and the models…[/]")
    pipeline = build_pipeline(settings, progress=True)  # a first run trains SASRec: show how far
    settings = pipeline.settings
    recommender = Recommender(pipeline=pipeline).warm_up()
    agent = ChatAgent(recommender)
    users = [str(u) for u in recommender.split.user_ids[:200].tolist()]
    console.print(f"fewrec chat on http://{settings.chat.host}:{settings.chat.port} (Ctrl-C stops it)")
    launch(agent, settings.chat.host, settings.chat.port, share=share, users=users)


def check_port_free(host: str, port: int) -> None:
    """The page's address can be listened on: a port out of range or in use (a page still
    running from an earlier `make run`) is one line naming --port, not gradio's traceback."""
    import socket

    if not 0 < port < 65536:
        raise FewrecError(f"--port must be between 1 and 65535, got {port}")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: TIME_WAIT is free
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise FewrecError(
                f"cannot listen on {host}:{port} ({exc.strerror or exc}): is another fewrec chat still "
                "running there? Stop it, or choose another port with --port"
            ) from None
