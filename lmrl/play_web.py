"""`lmrl play --web`: the same play as the terminal, in a Gradio page, for people who will not use
a terminal. Each browser tab plays its own [`PlaySession`]; a finished episode is saved with
[`append_row`], the terminal's path, so the rows are the same. Needs `pip install lmrl[web]`.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from pathlib import Path

from .envs.human import UnreadableLine
from .play import PLAY_SEED, Player, append_row, open_log

RATINGS = ["1", "2", "3", "4", "5"]


def _gradio():
    try:
        import gradio
    except ImportError:
        raise ValueError("lmrl play --web needs Gradio: pip install 'lmrl[web]' (or pip install gradio).") from None
    return gradio


def build_app(player: Player, out: str | Path, seed: int = PLAY_SEED, resume: bool = False):
    """The Gradio page (`gradio.Blocks`): the person's briefing (the listing, the trip), the chat, the
    score at the end, an optional rating and a save button that appends the episode to `out`."""
    gr = _gradio()
    saved = [open_log(out, resume)]
    seeds = itertools.count(seed + saved[0])  # every new episode, in any tab, gets its own draw
    writing = threading.Lock()  # tabs run in threads; one writer at a time

    def start():
        session = player.session()
        briefing = session.start(next(seeds))
        return session, [], briefing, "", None, gr.update(interactive=False)

    def send(text, session, chat):
        if session.finished:
            return session, chat, text, "The episode is over: rate it if you like and save it.", gr.update()
        try:
            reply = session.hear(text)
        except UnreadableLine as err:
            return session, chat, text, str(err), gr.update()
        chat = [*chat, {"role": "user", "content": text.strip()}]
        if reply is not None:
            chat.append({"role": "assistant", "content": reply if reply.strip() else "(an empty reply)"})
        return session, chat, "", _status(session), gr.update(interactive=session.finished)

    def end(session):
        if not session.finished:
            session.end()
        return session, _status(session), gr.update(interactive=True)

    def save(rating, session):
        if not session.finished:
            return "Finish the episode first (or press End episode).", gr.update()
        row = session.row(int(rating) if rating else None)
        if row is None:
            message = "Nothing to save: the agent never replied."
        else:
            with writing:
                append_row(out, row)
                saved[0] += 1
                message = f"Saved episode {saved[0]} to {out}."
        return message, gr.update(interactive=False)

    with gr.Blocks(title="lmrl play") as app:
        gr.Markdown(f"## Play against {player.agent}\nFinished episodes are saved to `{out}` as training rows.")
        session = gr.State()
        briefing = gr.Markdown(elem_id="briefing")
        chat = gr.Chatbot(elem_id="chat", label="Conversation")
        line = gr.Textbox(elem_id="line", label="Your line", placeholder="Write to the agent, then press Send")
        with gr.Row():
            send_button = gr.Button("Send", elem_id="send", variant="primary")
            end_button = gr.Button("End episode", elem_id="end")
        status = gr.Markdown(elem_id="status")
        rating = gr.Radio(RATINGS, label="Rate the agent (optional): 1 poor, 5 great", elem_id="rating")
        with gr.Row():
            save_button = gr.Button("Save episode", elem_id="save", interactive=False)
            new_button = gr.Button("New episode", elem_id="new")
        started = [session, chat, briefing, status, rating, save_button]
        app.load(start, outputs=started)
        new_button.click(start, outputs=started)
        for trigger in (send_button.click, line.submit):
            trigger(send, [line, session, chat], [session, chat, line, status, save_button])
        end_button.click(end, [session], [session, status, save_button])
        save_button.click(save, [rating, session], [status, save_button])
    return app


def _status(session) -> str:
    if not session.finished:
        return ""
    return f"**{session.summary}** Rate the agent if you like, then press Save episode."


def play_web(player: Player, out: str | Path, seed: int = PLAY_SEED, resume: bool = False,
             host: str = "127.0.0.1", port: int | None = None) -> int:
    """Serve the page on `host` (loopback by default: only this machine can open it) until Ctrl-C."""
    app = build_app(player, out, seed, resume)
    print(f"Playing {player.agent}; finished episodes go to {out}. Ctrl-C stops the page.")
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: Gradio closes the server
        app.launch(server_name=host, server_port=port)
    return 0
