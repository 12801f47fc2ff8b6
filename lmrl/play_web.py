"""`lmrl play --web`: the same play as the terminal, in a Gradio page, for people who will not use
a terminal. Each browser tab plays its own [`PlaySession`]; a finished episode is saved with
[`append_row`], the terminal's path, so the rows are the same. Needs `pip install lmrl[web]`.

The conversation on the page is drawn from the session's messages, so it is always the one that is
saved; the outcome and the agent's score close it. Clearing the conversation (the chat's trash icon)
starts a new episode, and an episode that is not saved is saved or given up on the person's word
first. The page shows the model's folder name, never a path on the server; Gradio's API list and its
usage analytics are off unless asked for (`api=True`; `GRADIO_ANALYTICS_ENABLED=True`). Served beyond
this machine, it needs a login (`auth`) or an explicit choice to go without ([`check_serving`]).
"""

from __future__ import annotations

import contextlib
import getpass
import ipaddress
import itertools
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from .envs.human import UnreadableLine
from .play import PLAY_SEED, Player, PlaySession, append_row, open_log

RATINGS = ["1", "2", "3", "4", "5"]
EMPTY_REPLY = "(an empty reply)"  # how an empty reply of the agent shows; the row keeps ""
OUTCOME = "Episode over"  # the title of the outcome that closes the conversation


def _gradio():
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before Gradio reads it
    try:
        import gradio
    except ImportError:
        raise ValueError("lmrl play --web needs Gradio: pip install 'lmrl[web]' (or pip install gradio).") from None
    return gradio


def is_loopback(host: str) -> bool:
    """Whether `host` serves this machine only (127.0.0.1, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may reach the network
        return False


def parse_auth(text: str) -> tuple[str, str]:
    """`USER:PASSWORD` as Gradio's login pair; `USER` alone asks for the password on the terminal
    (so it stays out of the shell's history and the process list)."""
    user, colon, password = text.partition(":")
    if not user:
        raise ValueError(f"--auth {text!r}: give USER:PASSWORD (or USER alone, to type the password).")
    if not colon:
        password = getpass.getpass(f"Password for {user} on the play page: ")
    if not password:
        raise ValueError(f"--auth {user}: the password is empty. Give USER:PASSWORD with a password.")
    return user, password


def check_serving(host: str, auth: tuple[str, str] | None, no_auth_on_network: bool) -> None:
    """Refuse to serve the page beyond this machine without a login, unless asked for on purpose:
    anyone who opens it can write training rows."""
    if auth is not None and no_auth_on_network:
        raise ValueError("--auth and --no-auth-on-network contradict each other: give one of them.")
    if auth is None and not no_auth_on_network and not is_loopback(host):
        raise ValueError(f"--host {host} serves the page to other machines, and anyone who opens it can write "
                         "training rows. Add --auth USER:PASSWORD so that people log in, or --no-auth-on-network "
                         "to serve it without a login on purpose.")


@dataclass
class Tab:
    """What one browser tab holds: its episode, and whether that episode is saved."""

    session: PlaySession
    saved: bool = False

    def unsaved(self) -> bool:
        """The agent has replied and the episode is not in the file: leaving it loses it."""
        return self.session.agent_turns > 0 and not self.saved


def conversation(tab: Tab) -> list[dict]:
    """The chat as the page shows it: the session's messages (what a row saves), then the outcome."""
    session = tab.session
    shown = [{"role": m["role"], "content": m["content"] if m["content"].strip() else EMPTY_REPLY}
             for m in session.messages if m["role"] != "system"]
    if session.finished:
        outcome = session.summary
        if session.closing_line is not None:
            outcome = f'You wrote "{session.closing_line}". {outcome}'
        title = f"{OUTCOME} (saved)" if tab.saved else OUTCOME
        shown.append({"role": "assistant", "content": outcome, "metadata": {"title": title}})
    return shown


def build_app(player: Player, out: str | Path, seed: int = PLAY_SEED, resume: bool = False, api: bool = False):
    """The Gradio page (`gradio.Blocks`): the person's briefing (the listing or the trip, and the rules),
    the conversation closed by its outcome and score, an optional rating, and a save button that
    appends the episode to `out`. `api=True` lists the page's events in Gradio's API page."""
    gr = _gradio()
    saved = [open_log(out, resume, player.inputs)]
    seeds = itertools.count(seed + saved[0])  # every new episode, in any tab, gets its own draw
    writing = threading.Lock()  # tabs run in threads; one writer at a time
    visibility = "public" if api else "private"
    name = player.name or player.agent
    heading = f"Chat with {name}" if player.task is None else f"Play against {name}"

    def briefing_text(text: str) -> str:
        return "### Your part\n\n" + "\n\n".join(line for line in text.splitlines() if line.strip())

    def write_row(tab: Tab, rating) -> int:
        row = tab.session.row(int(rating) if rating else None)
        with writing:
            append_row(out, row)
            saved[0] += 1
            count = saved[0]
        tab.saved = True
        return count

    def view(tab: Tab, note: str = "", confirming: bool = False, clear_line: bool = False) -> dict:
        session = tab.session
        playing = not session.finished and not confirming
        if session.finished:
            question = "This episode is over, and it is not saved."
        else:
            question = "This episode is not over. Saved now, it is kept as unfinished, without a score."
        return {
            state: tab, chat: conversation(tab), status: note,
            line: gr.update(value="", interactive=playing) if clear_line else gr.update(interactive=playing),
            send_button: gr.update(interactive=playing),
            end_button: gr.update(interactive=playing),
            save_button: gr.update(interactive=session.finished and tab.unsaved() and not confirming),
            new_button: gr.update(interactive=not confirming),
            confirm_box: gr.update(visible=confirming),
            confirm_text: f"**{question}** Save it before a new episode starts?" if confirming else "",
        }

    def start(note: str = "") -> dict:
        tab = Tab(player.session())
        text = tab.session.start(next(seeds))
        return {**view(tab, note, clear_line=True), briefing: briefing_text(text), rating: None}

    def finished_note(tab: Tab) -> str:
        if tab.session.agent_turns == 0:
            return "Press New episode to play again."
        return "Rate the agent if you like, then press Save episode to keep this episode."

    def send(text, tab):
        if tab.session.finished:
            return view(tab, "The episode is over: save it, or press New episode.")
        try:
            tab.session.hear(text)
        except UnreadableLine as err:
            return {status: str(err)}
        return view(tab, finished_note(tab) if tab.session.finished else "", clear_line=True)

    def end(tab):
        if not tab.session.finished:
            tab.session.end()
        return view(tab, finished_note(tab))

    def save(rating_value, tab):
        if not tab.session.finished:
            return view(tab, "Finish the episode first (or press End episode).")
        if not tab.unsaved():
            return view(tab, "Nothing to save." if tab.session.agent_turns == 0 else "This episode is saved.")
        count = write_row(tab, rating_value)
        return view(tab, f"Saved: the file now holds {count} episode(s). Press New episode to play again.")

    def new(tab):
        return view(tab, confirming=True) if tab.unsaved() else start()

    def clear(tab):
        if tab.unsaved():
            return view(tab, "Clearing the conversation starts a new episode.", confirming=True)
        return start("Conversation cleared: a new episode has started.")

    def save_then_new(rating_value, tab):
        if not tab.session.finished:
            tab.session.end()
        count = write_row(tab, rating_value)
        return start(f"Saved the last episode (the file now holds {count}). A new episode has started.")

    def discard_then_new(tab):
        return start("The last episode was not saved. A new episode has started.")

    with gr.Blocks(title=f"lmrl play: {name}", analytics_enabled=analytics_enabled()) as app:
        gr.Markdown(f"## {heading}\nEach episode you save becomes a training row for the agent, with your "
                    "rating if you give one.", elem_id="header")
        state = gr.State()
        briefing = gr.Markdown(elem_id="briefing")
        chat = gr.Chatbot(elem_id="chat", label="Conversation", render_markdown=False, buttons=["copy", "copy_all"],
                          group_consecutive_messages=False,  # the outcome in a bubble of its own
                          placeholder="The conversation appears here: write your first line below.")
        line = gr.Textbox(elem_id="line", label="Your line", placeholder="Write to the agent, then press Send")
        with gr.Row():
            send_button = gr.Button("Send", elem_id="send", variant="primary")
            end_button = gr.Button("End episode", elem_id="end")
        status = gr.Markdown(elem_id="status")
        with gr.Group(visible=False, elem_id="confirm") as confirm_box:
            confirm_text = gr.Markdown(elem_id="confirm-text")
            with gr.Row():
                confirm_save = gr.Button("Save it, then start a new episode", elem_id="confirm-save", variant="primary")
                confirm_discard = gr.Button("Start a new episode without saving it", elem_id="confirm-discard")
                confirm_back = gr.Button("Go back to this episode", elem_id="confirm-back")
        rating = gr.Radio(RATINGS, label="Rate the agent (optional): 1 poor, 5 great", elem_id="rating")
        with gr.Row():
            save_button = gr.Button("Save episode", elem_id="save", interactive=False)
            new_button = gr.Button("New episode", elem_id="new")

        shown = [state, chat, status, line, send_button, end_button, save_button, new_button, confirm_box,
                 confirm_text]
        started = [*shown, briefing, rating]
        events = {"api_visibility": visibility, "concurrency_id": "agent", "concurrency_limit": 1}
        app.load(start, outputs=started, **events)
        new_button.click(new, [state], started, **events)
        chat.clear(clear, [state], started, **events)
        for trigger in (send_button.click, line.submit):
            trigger(send, [line, state], shown, **events)
        end_button.click(end, [state], shown, **events)
        save_button.click(save, [rating, state], shown, **events)
        confirm_save.click(save_then_new, [rating, state], started, **events)
        confirm_discard.click(discard_then_new, [state], started, **events)
        confirm_back.click(lambda tab: view(tab), [state], shown, **events)
    app.lmrl_api = api  # serve() lists the API in the footer only then
    return app


def analytics_enabled() -> bool:
    """Gradio's usage analytics, off unless GRADIO_ANALYTICS_ENABLED=True asks for them."""
    return os.environ.get("GRADIO_ANALYTICS_ENABLED", "False") == "True"


def serve(app, host: str = "127.0.0.1", port: int | None = None, auth: tuple[str, str] | None = None,
          block: bool = True) -> None:
    """Launch a page of [`build_app`] on `host`: without the footer's API link (unless built with
    `api=True`) and without Gradio's run history. `block=False` returns once the server runs."""
    footer = ["api", "gradio", "settings"] if getattr(app, "lmrl_api", False) else ["gradio", "settings"]
    app.launch(server_name=host, server_port=port, auth=[auth] if auth else None, footer_links=footer,
               run_history=False, prevent_thread_lock=not block)


def play_web(player: Player, out: str | Path, seed: int = PLAY_SEED, resume: bool = False,
             host: str = "127.0.0.1", port: int | None = None, auth: tuple[str, str] | None = None,
             no_auth_on_network: bool = False, api: bool = False) -> int:
    """Serve the page on `host` (loopback by default: only this machine can open it) until Ctrl-C;
    another host needs `auth` (a login) or `no_auth_on_network` ([`check_serving`])."""
    check_serving(host, auth, no_auth_on_network)
    app = build_app(player, out, seed, resume, api)
    if not is_loopback(host) and auth is None:
        print(f"Warning: the page on {host} has no login: anyone who can reach it can write training rows to "
              f"{out}.", file=sys.stderr)
    print(f"Playing {player.agent}; finished episodes go to {out}. Ctrl-C stops the page.")
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: Gradio closes the server
        serve(app, host, port, auth)
    return 0
