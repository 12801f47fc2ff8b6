"""Play against a trained agent, and keep the episodes as training rows (`lmrl play`).

The person takes the other side of the agent's task ([`lmrl.envs.human.HumanSide`]: the
negotiation's buyer, the flight booking's customer, or a free chat when the model has no task); the
agent answers with the policy `lmrl eval` decodes with ([`lmrl.evaluation.build_policy`]). Each
finished episode becomes one row of the training schema (docs/design.md, section 1: Data), scored by
the task's rules, with the person's rating, appended to a JSONL file by rewriting it whole into a temp
file and renaming it over the old one, so a crash or Ctrl-C at any point leaves it valid. That file is
never one that play reads (the recipe, the model's folder, its data).

    lmrl play runs/negotiation/chai --out runs/played/negotiation.jsonl
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .data import Episode, validate_row
from .data.outputs import atomic_output, check_outputs
from .envs.human import FreeChat, HumanSide, UnreadableLine

PLAY_SEED = 50_000  # away from the evaluation buyers and customers (lmrl eval starts at 10000)
HELP = "Type /end to end the episode here, /quit (or Ctrl-C) to stop without saving it."
COMMAND = re.compile(r"/\w+")  # a line that is one word after a slash: a command, never sent to the agent


class PlaySession:
    """One episode between the agent (`policy`) and a person (`side`), turn by turn: the terminal and
    the web page both drive it, so they write the same rows. The person's lines go to the agent,
    except the command `/end`, which ends the episode and is never part of the conversation.

    Example:
        ```python
        >>> session = PlaySession(policy, HumanBuyer(), task="negotiation", max_turns=10)
        >>> print(session.start(seed=50_000))   # the person's briefing
        >>> session.hear("Would you take $100?")  # the agent's reply
        'I can do $180.'
        >>> session.hear("deal"), session.finished, session.summary
        (None, True, 'Sold at $180 ...')
        ```
    """

    def __init__(self, policy, side: HumanSide, task: str | None = None, max_turns: int | None = None,
                 agent: str = ""):
        if getattr(policy, "needs_envs", False) and not hasattr(side, "env"):
            raise ValueError("This recipe plans each reply by simulating the task's user, which cannot stand in "
                             "for a person in this task. Play a recipe without plan_candidates.")
        self.policy, self.side, self.task, self.max_turns, self.agent = policy, side, task, max_turns, agent

    def start(self, seed: int) -> str:
        """A new episode; returns the person's briefing (with the rules: what ends it, how it is scored)."""
        self.seed = seed
        briefing = self.side.reset(seed)
        if self.max_turns is not None:
            briefing += f"\nThe agent has at most {self.max_turns} replies."
        self.messages = [{"role": "system", "content": self.side.system_prompt}] if self.side.system_prompt else []
        self.agent_turns = 0
        self.finished, self.done, self.summary = False, False, ""
        self.closing_line = None  # the person's line that ended the episode ("deal", "bye"): not in the row
        return briefing

    def hear(self, text: str) -> str | None:
        """The person's line; returns the agent's reply, or None when the line ended the episode (`/end`,
        or the task's own end: accepting a price, walking away). Raises [`UnreadableLine`] (its message
        says what to write) when the task cannot read the line, or it is a command other than `/end`."""
        if self.finished:
            raise RuntimeError("The episode is over; start() a new one.")
        command = text.strip()
        if COMMAND.fullmatch(command):
            if command.lower() != "/end":
                raise UnreadableLine(f"{command} is not a command here: type /end to end the episode.")
            self.end()
            return None
        reward, done, info = self.side.hear(text)
        if done:  # the row ends on the agent's last reply, as generated episodes do
            self._add_reward(reward)
            self.closing_line = command
            self._finish(True, info["summary"])
            return None
        self.messages.append({"role": "user", "content": text.strip()})
        conversation = Episode.from_messages(self.messages).messages()
        if getattr(self.policy, "needs_envs", False):  # planning on copies of the task's env
            reply = self.policy([conversation], envs=[self.side.env])[0]
        else:
            reply = self.policy([conversation])[0]
        reward, done, info = self.side.step(reply)
        self.messages.append({"role": "assistant", "content": reply, "reward": float(reward)})
        self.agent_turns += 1
        if done:
            self._finish(True, info["summary"])
        elif self.max_turns is not None and self.agent_turns >= self.max_turns:
            self._finish(False, f"The agent replied {self.agent_turns} times without an outcome: the episode ends "
                         "here, unfinished, and the agent gets no score.")
        return reply

    def end(self) -> None:
        """The person ends the episode here: finished for a free chat, cut off (done: false) in a task."""
        if self.agent_turns == 0:
            self._finish(False, "You ended the episode before the agent replied: there is nothing to save.")
        elif self.task is None:
            self._finish(True, "Chat ended.")
        else:
            self._finish(False, "You ended the episode before its outcome: it is kept as unfinished, and the "
                         "agent gets no score.")

    def row(self, rating: int | None = None) -> dict | None:
        """The finished episode as a training row, or None when the agent never replied."""
        if not any(m["role"] == "assistant" for m in self.messages):
            return None
        row = {"messages": self.messages, "done": self.done, "task": self.task, "source": "human",
               "agent": self.agent, "seed": self.seed, "rating": rating, **self.side.row_fields()}
        validate_row(row)
        return row

    def _add_reward(self, reward: float) -> None:
        replies = [m for m in self.messages if m["role"] == "assistant"]
        if replies:
            replies[-1]["reward"] += float(reward)

    def _finish(self, done: bool, summary: str) -> None:
        self.finished, self.done, self.summary = True, done, summary


@dataclass
class Player:
    """The agent and the task it plays: what `lmrl play` loads from a recipe or a checkpoint. `agent`
    (the checkpoint and recipe paths) goes into each row; `name` (the model folder's name) is what
    the web page shows; `inputs` are the files and folders play reads, which its log never overwrites."""

    policy: Callable
    task: object | None  # lmrl.tasks.Task, or None for a free chat
    task_kwargs: dict
    agent: str
    name: str = ""
    inputs: tuple[Path, ...] = ()

    def session(self) -> PlaySession:
        if self.task is None:
            return PlaySession(self.policy, FreeChat(), agent=self.agent)
        side = self.task.human_side(**self.task_kwargs)
        return PlaySession(self.policy, side, self.task.name, self.task.max_turns, self.agent)


def load_player(target: str | Path, checkpoint: str | Path | None = None, overrides: dict | None = None) -> Player:
    """The agent of a recipe file (trained at its `output_dir`, or at `checkpoint`), or of a trained
    model folder (its recipe found by [`lmrl.recipes.find_recipe`]; a causal LM without one: a free chat)."""
    from accelerate import PartialState

    from .evaluation import build_policy
    from .recipes import find_recipe, parse_recipe, read_recipe
    from .tasks import get_task, task_names

    target = Path(target)
    recipe = target if target.is_file() else None
    if recipe is None:
        if not target.is_dir():
            raise ValueError(f"{target}: no such recipe file or model folder. Give a recipe (recipes/...yaml) or the "
                             "output_dir of a trained model.")
        checkpoint = checkpoint or target
        recipe = find_recipe(target)
        if recipe is None:
            return _free_chat(target, overrides)
    script, config = parse_recipe(read_recipe(recipe, overrides), str(recipe))
    checkpoint = Path(checkpoint or config.output_dir)
    task = get_task(script.task) if script.task else None
    if task is not None:
        task.check_options(script.task_kwargs)  # a misspelt option: an error before the model is loaded
    if task is not None and task.human_side is None:
        playable = sorted(name for name in task_names() if get_task(name).human_side is not None)
        raise ValueError(f"Task {script.task!r} has no side for a person to play; lmrl play knows "
                         f"{', '.join(playable)}, and free chats with models that have no task.")
    policy = build_policy(script, config, checkpoint, task, PartialState(cpu=config.use_cpu).device)
    return Player(policy, task, dict(script.task_kwargs or {}), f"{checkpoint} ({recipe})",
                  checkpoint.resolve().name, _inputs(recipe, checkpoint, script, config))


def _inputs(recipe: Path, checkpoint: Path, *settings) -> tuple[Path, ...]:
    """The recipe, the checkpoint and every local path the recipe names (data, models, tokenizer)."""
    from .recipes import PATH_FIELDS

    paths = [recipe, checkpoint]
    for name in PATH_FIELDS:
        for holder in settings:
            value = getattr(holder, name, None)
            paths += [Path(v) for v in (value if isinstance(value, list) else [value]) if isinstance(v, str)]
    return tuple(path for path in paths if path.exists())


def _free_chat(folder: Path, overrides: dict | None) -> Player:
    """A model folder without a recipe: a causal LM (or an ILQL model, guided) to chat with."""
    import torch
    from transformers import AutoConfig

    from .evaluation import FREE_CHAT_TOKENS, load_policy_model
    from .generation import GeneratePolicy

    if overrides:
        raise ValueError(f"{folder} has no recipe, so recipe fields ({', '.join(overrides)}) have nothing to change.")
    model_type = AutoConfig.from_pretrained(folder).model_type
    if model_type == "lmrl_chai_critic":
        raise ValueError(f"{folder} is a CHAI critic without its recipe (recipe.yaml), which names the proposal LM "
                         "it ranks: lmrl play RECIPE.yaml --checkpoint FOLDER.")
    algorithm = "ilql" if model_type == "lmrl_ilql" else "bc"
    model, tokenizer = load_policy_model(folder, algorithm, "cuda" if torch.cuda.is_available() else "cpu")
    return Player(GeneratePolicy(model, tokenizer, max_new_tokens=FREE_CHAT_TOKENS), None, {}, str(folder),
                  folder.resolve().name, (folder,))


def read_log(path: str | Path) -> int:
    """The number of episodes in a played-episodes file, after checking every line is a valid row."""
    count = 0
    with Path(path).open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                validate_row(json.loads(line))
            except ValueError as err:  # json.JSONDecodeError is a ValueError too
                raise ValueError(f"{path}: line {number} is not a valid episode row ({err}). Fix or remove that "
                                 "line, then --resume again.") from None
            count += 1
    return count


def check_out(path: str | Path, inputs: tuple[Path, ...] | list[Path] = ()) -> None:
    """Refuse an output file that is one of play's inputs (`Player.inputs`: the recipe, a dataset) or
    lies inside one of their folders (the checkpoint's), once links and relative paths are resolved."""
    check_outputs(inputs=[p for p in inputs if not Path(p).is_dir()], outputs={"--out": path})
    target = Path(path).resolve()
    for folder in (Path(p) for p in inputs if Path(p).is_dir()):
        if folder.resolve() == target or folder.resolve() in target.parents:
            raise ValueError(f"--out ({path}) is inside {folder}, which this command reads (the model's folder, "
                             "or its data): writing there could destroy its input. Pass another path for --out, "
                             "e.g. runs/played/TASK.jsonl.")


def open_log(path: str | Path, resume: bool, inputs: tuple[Path, ...] | list[Path] = ()) -> int:
    """Check the output file before playing: the number of episodes it holds (0 for a new file). It
    must not be one of `inputs` ([`check_out`])."""
    check_out(path, inputs)
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; --out names the JSONL file the episodes go to.")
    if path.exists():
        if not resume:
            raise ValueError(f"{path} already exists. Add --resume to add episodes to it, or choose another --out.")
        return read_log(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return 0


def append_row(path: str | Path, row: dict) -> None:
    """Append one row to a JSONL file atomically: the old lines and the new one are written to a temp
    file in the same folder, flushed to disk, and renamed over the file. Whenever the process dies, the
    file holds either the old episodes or the old ones and the new one, never part of a line."""
    path = Path(path)
    old = path.read_bytes() if path.exists() else b""
    if old and not old.endswith(b"\n"):
        old += b"\n"
    with atomic_output(path) as partial, partial.open("wb") as handle:
        handle.write(old + (json.dumps(row) + "\n").encode("utf-8"))
        handle.flush()
        os.fsync(handle.fileno())
    folder = os.open(path.parent, os.O_RDONLY)
    try:  # the rename itself reaches the disk
        os.fsync(folder)
    finally:
        os.close(folder)


def ask_rating(read: Callable[[str], str], write: Callable[[str], None]) -> int | None:
    """The person's rating of the agent, 1 to 5, or None (Enter skips)."""
    while True:
        text = read("Rate the agent from 1 (poor) to 5 (great), or press Enter to skip: ").strip()
        if not text:
            return None
        if text in {"1", "2", "3", "4", "5"}:
            return int(text)
        write(f"{text!r} is not a rating: type a number from 1 to 5, or press Enter to skip.")


def play_terminal(player: Player, out: str | Path, episodes: int = 1, seed: int = PLAY_SEED, resume: bool = False,
                  read: Callable[[str], str] = input, write: Callable[[str], None] = print) -> int:
    """Play `episodes` episodes in the terminal, appending each finished one to `out`; returns the exit
    code (130 when stopped early: Ctrl-C, /quit or the end of the input)."""
    saved = first = open_log(out, resume, player.inputs)
    write(f"Playing {player.agent}. Finished episodes go to {out} ({saved} there already). {HELP}")
    try:
        for k in range(episodes):
            session = player.session()
            write("\n" + session.start(seed + first + k))  # a resumed file goes on with new episodes
            _play_episode(session, read, write)
            write(session.summary)
            if session.agent_turns == 0:  # the summary says there is nothing to save
                continue
            try:
                rating, stop = ask_rating(read, write), False
            except (KeyboardInterrupt, EOFError):  # the episode is finished: keep it, without a rating
                rating, stop = None, True
            append_row(out, session.row(rating))
            saved += 1
            write(f"Saved episode {saved} to {out}.")
            if stop:
                raise KeyboardInterrupt
    except (KeyboardInterrupt, EOFError):
        write(f"\nStopped: {out} holds {saved} finished episode(s); an unfinished one is not saved. "
              "Go on with --resume.")
        return 130
    return 0


def _play_episode(session: PlaySession, read: Callable[[str], str], write: Callable[[str], None]) -> None:
    """The person's lines until the episode ends; /quit, Ctrl-C and the end of the input raise."""
    while not session.finished:
        line = read("you> ")
        if line.strip().lower() == "/quit":
            raise KeyboardInterrupt
        try:
            reply = session.hear(line)
        except UnreadableLine as err:
            write(str(err))
            continue
        if reply is not None:
            write(f"agent> {reply}" if reply.strip() else "agent> (an empty reply)")
