"""Flight booking: an agent with a flight table serves a scripted customer (after AirDialogue / CALM)."""

from lmrl.envs import TaskAnchors
from lmrl.tasks import Task

from .data import AgentBehaviour, generate_flight_episodes
from .env import FlightBookingEnv, correct_action, expected_action, meets, random_scenario
from .format import STATUSES, FinalAction, parse_action, render_action, render_context
from .human import HumanCustomer
from .relabel import relabel_context, relabel_row
from .rule import SUCCESS_RULES, is_success

__all__ = ["STATUSES", "SUCCESS_RULES", "AgentBehaviour", "FinalAction", "FlightBookingEnv", "HumanCustomer", "TaskAnchors",
           "correct_action", "expected_action", "generate_flight_episodes", "is_success", "meets", "outcome_label",
           "parse_action", "random_scenario", "relabel_context", "relabel_row", "render_action", "render_context"]

NON_FLIGHT_OUTCOMES = ("cancel", "no_flight", "no_reservation")


def outcome_label(row: dict) -> int:
    """The class of the dialogue's final action for CALM's outcome head: its row in the table for
    book/change, else len(table) + the index of cancel / no_flight / no_reservation."""
    action = row.get("action")
    if not action:
        raise ValueError("The row has no 'action' (the dialogue's final action); CALM's outcome head needs it.")
    kb = row["context"]["kb"]
    if action["status"] in NON_FLIGHT_OUTCOMES:
        return len(kb) + NON_FLIGHT_OUTCOMES.index(action["status"])
    numbers = [f["flight_number"] for f in kb]
    if action["flight"] not in numbers:
        raise ValueError(f"The row's action names flight {action['flight']}, which is not in its table.")
    return numbers.index(action["flight"])


def _make_env(split: str = "eval", num_flights: int = 30, success_rule: str = "official") -> FlightBookingEnv:
    return FlightBookingEnv(num_flights, success_rule=success_rule)


def _make_data(n: int, seed: int = 0, progress: bool = True, num_flights: int = 30, success_rule: str = "official"):
    return generate_flight_episodes(n, seed=seed, num_flights=num_flights, progress=progress,
                                    success_rule=success_rule)


def _human_side(num_flights: int = 30, success_rule: str = "official") -> HumanCustomer:
    return HumanCustomer(num_flights, success_rule)


def _anchors(dataset_return: float) -> TaskAnchors:
    return TaskAnchors(minimum=0.0, dataset=dataset_return, best=1.0)


def _load_corpus(path: str, kb_path: str | None = None, success_rule: str = "official", on_error=None):
    """AirDialogue rows from `path` (train_data.json) and the kb file beside it (train_kb.json), streamed."""
    from pathlib import Path

    from .airdialogue import iter_airdialogue

    data = Path(path)
    kb = Path(kb_path) if kb_path else data.with_name(data.name.replace("_data", "_kb"))
    if kb == data:
        raise ValueError(f"{data}: cannot find the kb file, since the name has no '_data' to replace with '_kb'. "
                         "Pass it: --option kb_path=PATH.")
    return iter_airdialogue(data, kb, success_rule=success_rule, on_error=on_error)


def _corpus_schema():
    from .airdialogue import row_schema

    return row_schema()


TASK = Task("flight_booking", _make_env, _make_data, _anchors, max_turns=10, max_new_tokens=24,
            load_corpus=_load_corpus, corpus_schema=_corpus_schema, relabel=relabel_row,
            outcome_label=outcome_label, ends_episode=lambda reply: parse_action(reply) is not None,
            human_side=_human_side)
