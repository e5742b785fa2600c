"""The Gradio chat page (`fewrec chat`): a chat column, and a side panel with the user picker,
what the conversation has established, and recommendation cards with thumbs up/down.

Each browser session keeps its own `Session` in a `gr.State`; the `ChatAgent` (and the one
`Recommender` behind it) is shared by all sessions. Three API endpoints are public for
`gradio_client`: /start (user id), /chat (message) and /feedback (card number, liked).
"""

from __future__ import annotations

import html
import json
import logging
from dataclasses import dataclass
from typing import Any

import gradio as gr
from pydantic import BaseModel, Field

from fewrec.agent.chat import ChatAgent, ChatState, ChatTurn, describe_filters
from fewrec.agent.recommender import Recommendation
from fewrec.prompts.templates import display_title

log = logging.getLogger(__name__)

CSS = """
.rec-card {border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 6px 10px;}
.rec-card p {margin: 2px 0;}
"""


CARD_FIELDS = {"item_id", "title", "year", "genres", "rank", "explanation", "sources", "fallback"}


class Session(BaseModel):
    """One browser session: the conversation state, the messages and the cards on screen."""

    chat: ChatState = Field(default_factory=ChatState)
    messages: list[dict[str, str]] = Field(default_factory=list)
    cards: list[Recommendation] = Field(default_factory=list)


def card_markdown(rec: Recommendation) -> str:
    year = f" ({rec.year})" if rec.year and f"({rec.year})" not in rec.title else ""
    lines = [f"**{rec.rank}. {display_title(rec.title)}**{year}", ", ".join(rec.genres) or "—"]
    if rec.explanation:
        lines.append(f"*Why:* {rec.explanation}")
    return "\n\n".join(lines)


def profile_markdown(agent: ChatAgent, state: ChatState) -> str:
    def titles(items: list) -> str:
        return "; ".join(display_title(agent.recommender.split.catalog.title(i)) for i in items) or "—"

    who = f"user {html.escape(state.user_id)}" if state.user_id else "a fresh profile"
    return "\n\n".join(
        [
            f"**Talking with** {who}",
            f"**Liked:** {titles(state.liked)}",
            f"**Disliked:** {titles(state.disliked)}",
            f"**Nothing like:** {titles(state.avoid_like)}",
            f"**Not again:** {titles(state.excluded)}",
            f"**Constraints:** {describe_filters(state.filters) or '—'}"
            + (f"; about *{html.escape(state.query[:80])}*" if state.query else ""),
            f"**Shown so far:** {len(state.shown)}",
        ]
    )


class _Handlers:
    """What the page's events do: each takes the session and returns every output, in the order
    of `_View.outputs`."""

    def __init__(self, agent: ChatAgent) -> None:
        self.agent = agent
        self.slots = agent.settings.cards

    def outputs_for(self, session: Session) -> list[Any]:
        cards = []
        for i in range(self.slots):
            if i < len(session.cards):
                cards += [gr.Group(visible=True), gr.Markdown(value=card_markdown(session.cards[i]))]
            else:
                cards += [gr.Group(visible=False), gr.Markdown(value="")]
        cards_json = [json.loads(c.model_dump_json(include=CARD_FIELDS)) for c in session.cards]
        return [session.messages, session, profile_markdown(self.agent, session.chat), cards_json, *cards]

    def after_turn(self, session: Session, message: str, turn: ChatTurn, state: ChatState) -> list[Any]:
        session = session.model_copy(deep=True)
        session.chat = state
        if message:
            session.messages.append({"role": "user", "content": message})
        session.messages.append({"role": "assistant", "content": turn.reply})
        if turn.recommendations:
            session.cards = list(turn.recommendations)
        return self.outputs_for(session)

    def on_start(self, user_id: str | None, session: Session | None) -> list[Any]:
        state, greeting = self.agent.start(str(user_id) if user_id is not None else None)
        fresh = Session(chat=state, messages=[{"role": "assistant", "content": greeting}])
        return self.outputs_for(fresh)

    def on_message(self, message: str, session: Session | None) -> list[Any]:
        session = session or Session()
        turn, state = self.agent.respond(session.chat, message or "")
        shown = (message or "")[: self.agent.settings.max_message_chars]
        return ["", *self.after_turn(session, shown, turn, state)]

    def on_feedback(self, slot: int, liked: bool, session: Session | None) -> list[Any]:
        session = session or Session()
        if not 0 <= slot < len(session.cards):
            turn = ChatTurn(message="", reply="That card is no longer on screen.")
            return self.after_turn(session, "", turn, session.chat)
        turn, state = self.agent.feedback(session.chat, session.cards[slot].item_id, liked)
        return self.after_turn(session, "", turn, state)


@dataclass
class _View:
    """The page's components that events read or write."""

    session: gr.State
    chatbot: gr.Chatbot
    message: gr.Textbox
    send: gr.Button
    user: gr.Dropdown
    start: gr.Button
    profile: gr.Markdown
    cards_json: gr.JSON
    card_parts: list[Any]  # per card: its group, its text
    buttons: list[tuple[gr.Button, gr.Button]]  # per card: thumbs up, thumbs down

    @property
    def outputs(self) -> list[Any]:
        return [self.chatbot, self.session, self.profile, self.cards_json, *self.card_parts]


def _layout(agent: ChatAgent, users: list[str] | None) -> _View:
    """The components, inside the page being built: the chat column and the side panel."""
    session = gr.State(Session())
    gr.Markdown("## fewrec — film recommendations you can talk to")
    with gr.Row():
        with gr.Column(scale=3):
            chatbot = gr.Chatbot(label="Conversation", height=560, elem_id="conversation")
            message = gr.Textbox(
                placeholder="e.g. I loved Alien and Heat, something from the 90s, no horror",
                show_label=False, elem_id="message", max_lines=4,
            )  # fmt: skip
            send = gr.Button("Send", variant="primary", elem_id="send")
        with gr.Column(scale=2):
            with gr.Row():
                user = gr.Dropdown(
                    choices=users or [], value=None, allow_custom_value=True, label="User id (or none)",
                    elem_id="user",
                )  # fmt: skip
                start = gr.Button("Start", elem_id="start")
            profile = gr.Markdown(profile_markdown(agent, ChatState()), elem_id="profile")
            cards_json = gr.JSON(visible=False)
            card_parts: list[Any] = []
            buttons: list[tuple[gr.Button, gr.Button]] = []
            for i in range(agent.settings.cards):
                with gr.Group(visible=False, elem_classes="rec-card") as group:
                    text = gr.Markdown(elem_id=f"card-{i}")
                    with gr.Row():
                        up = gr.Button("👍 Liked it", size="sm", elem_id=f"up-{i}")
                        down = gr.Button("👎 Not for me", size="sm", elem_id=f"down-{i}")
                card_parts += [group, text]
                buttons.append((up, down))
    return _View(session, chatbot, message, send, user, start, profile, cards_json, card_parts, buttons)


def _wire(view: _View, handlers: _Handlers) -> None:
    """The events, inside the page being built; /start, /chat and /feedback are the public API."""
    outs, session, message = view.outputs, view.session, view.message
    message.submit(handlers.on_message, [message, session], [message, *outs], api_name="chat")
    view.send.click(handlers.on_message, [message, session], [message, *outs], api_visibility="private")
    view.start.click(handlers.on_start, [view.user, session], outs, api_name="start")
    for i, (up, down) in enumerate(view.buttons):
        up.click(lambda s, i=i: handlers.on_feedback(i, True, s), [session], outs, api_visibility="private")
        down.click(
            lambda s, i=i: handlers.on_feedback(i, False, s), [session], outs, api_visibility="private"
        )
    # The feedback endpoint for API clients: hidden inputs, cards numbered from 1.
    slot_box = gr.Number(visible=False, precision=0)
    liked_box = gr.Checkbox(visible=False)
    feedback_button = gr.Button(visible=False)
    feedback_button.click(
        lambda slot, liked, s: handlers.on_feedback(int(slot or 0) - 1, bool(liked), s),
        [slot_box, liked_box, session], outs, api_name="feedback",
    )  # fmt: skip


def build_app(agent: ChatAgent, users: list[str] | None = None) -> gr.Blocks:
    """The page over one agent. `users` fills the user picker (any id may be typed)."""
    handlers = _Handlers(agent)
    with gr.Blocks(title="fewrec") as page:
        _wire(_layout(agent, users), handlers)
    return page


def launch(agent: ChatAgent, host: str, port: int, share: bool = False, users: list[str] | None = None,
           block: bool = True, concurrency: int = 4) -> gr.Blocks:  # fmt: skip
    """Start the page; `block=False` returns at once (tests, embedding in other programs)."""
    page = build_app(agent, users)
    page.queue(default_concurrency_limit=concurrency)
    page.launch(
        server_name=host, server_port=port, share=share, prevent_thread_lock=not block, css=CSS,
        show_error=False, quiet=True,
    )  # fmt: skip
    return page
