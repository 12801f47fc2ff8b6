"""LMRL-Gym's maze, ported: the facts of their code (llm_rl_scripts/maze/ in abdulhaim/LMRL-Gym; the
package README names the file of each), the partial observability it claims, and the behaviour data.
Also: which of lmrl's own maze layouts, offered as partially observed, a memoryless policy solves."""

import pytest

from lmrl.envs import EVAL_SEED, rollout
from lmrl.tasks.lmrl_gym_maze import (
    LAST_K,
    MOVES,
    TASK,
    LmrlGymMazeEnv,
    Maze,
    MazeMixturePolicy,
    describe_full,
    describe_partial,
    expected_return,
    generate_episodes,
    lmrl_gym_maze_anchors,
    optimal_return,
    reference_context,
)
from lmrl.tasks.maze import LAYOUTS as LMRL_LAYOUTS
from lmrl.tasks.maze import MazeEnv
from lmrl.tasks.maze.env import layout_conflicts
from lmrl.tasks.maze.memoryless import memoryless_conflicts

DOUBLE_T = Maze.from_layout("double_t_maze")


def _walls(grid):
    return [[int(ch == "#") for ch in row] for row in grid]


def test_double_t_maze_layout_size_walls_and_goal():
    assert _walls(DOUBLE_T.grid) == [
        [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
        [1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1],
        [1, 1, 1, 0, 1, 1, 1, 1, 1, 0, 1, 1, 1],
        [1, 1, 1, 0, 1, 1, 1, 1, 1, 0, 1, 1, 1],
        [1, 1, 1, 0, 1, 1, 1, 1, 1, 0, 1, 1, 1],
        [1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1],
        [1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
    ]
    assert DOUBLE_T.goal == (8, 6) and len(DOUBLE_T.open_cells()) == 26
    umaze = Maze.from_layout("umaze")
    assert _walls(umaze.grid) == [[1, 1, 1, 1, 1], [1, 0, 0, 0, 1], [1, 0, 1, 0, 1], [1, 0, 1, 0, 1], [1, 1, 1, 1, 1]]
    assert umaze.goal == (3, 3)
    with pytest.raises(ValueError, match="double_t_maze, umaze"):
        Maze.from_layout("maze2d_medium")  # their file defines it, but no goal for it


def test_coordinates_are_row_then_column_and_down_adds_to_the_row():
    assert DOUBLE_T.move((1, 3), "move down") == (2, 3)
    assert DOUBLE_T.move((1, 3), "move right") == (1, 4)
    assert DOUBLE_T.move((1, 3), "move up") == (1, 3)  # a wall: stay


def test_fully_observed_texts_byte_for_byte():
    assert describe_full(DOUBLE_T, (1, 1)) == (
        "The goal is at position 8, 6. Your current position is at position 1, 1. "
        "There are walls to your left, above you, below you.\n")
    # two-digit coordinates have their digits spaced
    assert describe_full(DOUBLE_T, (1, 11)) == (
        "The goal is at position 8, 6. Your current position is at position 1, 1 1. "
        "There are walls to your right, above you, below you.\n")
    assert describe_full(DOUBLE_T, (5, 6)) == (
        "The goal is at position 8, 6. Your current position is at position 5, 6. There is a wall above you.\n")
    assert describe_full(DOUBLE_T, (7, 6)) == (
        "The goal is at position 8, 6. Your current position is at position 7, 6. "
        "There are walls to your right, to your left.\n")


def test_partially_observed_texts_byte_for_byte():
    assert describe_partial(DOUBLE_T, (1, 1)) == "There are walls to your left, above you, below you.\n"
    assert describe_partial(DOUBLE_T, (5, 3)) == "There are walls to your left, below you.\n"
    assert describe_partial(DOUBLE_T, (1, 9)) == "There is a wall above you.\n"
    open_room = Maze(("#####", "#...#", "#...#", "#...#", "#####"), (1, 1))
    assert describe_partial(open_room, (2, 2)) == "There are no walls near you.\n"


def test_moves_are_four_exact_strings():
    assert list(MOVES) == ["move left", "move right", "move up", "move down"]
    env = LmrlGymMazeEnv(observation="partial")
    env.reset(seed=0)  # (1, 1)
    assert env.step("move right")[1:] == (-1.0, False, {"invalid": False})
    assert env.step("move right\n")[1:] == (-1.0, False, {"invalid": False})  # the newline that ends a reply
    for reply in ("right", "Move right", "move  right", "move right.", "move top right"):
        observation, reward, done, info = env.step(reply)
        assert (reward, done, info) == (-4.0, False, {"invalid": True}) and env.position == (1, 3), reply


def test_rewards_for_a_move_a_wall_an_invalid_reply_and_the_goal():
    env = LmrlGymMazeEnv()
    env.reset(seed=0)
    env.position = (7, 6)
    assert env.step("move left") == (describe_full(DOUBLE_T, (7, 6)), -1.0, False, {"invalid": False})  # wall
    assert env.step("go south") == (describe_full(DOUBLE_T, (7, 6)), -4.0, False, {"invalid": True})
    assert env.step("move up") == (describe_full(DOUBLE_T, (6, 6)), -1.0, False, {"invalid": False})
    env.step("move down")
    assert env.step("move down") == ("Success\n", 0.0, True, {"success": True})


def test_horizon_is_100_steps_then_failure():
    env = LmrlGymMazeEnv()
    env.reset(seed=0)
    for _ in range(100):
        observation, reward, done, _ = env.step("move up")  # a wall at (1, 1): never the goal
        assert (reward, done) == (-1.0, False)
    position = env.position
    assert env.step("move right") == ("Failure\n", -1.0, True, {"success": False})
    assert env.position == position  # the reply after the horizon is not played

    def always(reply):
        return lambda conversations: [reply] * len(conversations)

    lost = rollout(lambda: LmrlGymMazeEnv(), always("move up"), [0], TASK.max_turns, progress=False)[0]
    assert TASK.max_turns == 101 and lost.done and not lost.success and lost.total_reward == -101.0
    babble = rollout(lambda: LmrlGymMazeEnv(), always("hello"), [0], TASK.max_turns, progress=False)[0]
    assert babble.total_reward == -4.0 * 100 - 1.0 and babble.invalid_actions == 100


def test_evaluation_plays_every_non_goal_cell_once_in_row_major_order():
    starts = DOUBLE_T.starts()
    assert len(starts) == 25 and (8, 6) not in starts
    assert starts[:6] == [(1, 1), (1, 2), (1, 3), (1, 4), (1, 5), (1, 7)]
    assert starts[-3:] == [(5, 9), (6, 6), (7, 6)]
    env = LmrlGymMazeEnv(split="eval")
    played = []
    for seed in range(EVAL_SEED, EVAL_SEED + 25):  # `lmrl eval` seeds
        env.reset(seed)
        played.append(env.position)
    assert played == starts
    train = LmrlGymMazeEnv(split="train")
    drawn = set()
    for seed in range(300):
        train.reset(seed)
        drawn.add(train.position)
    assert drawn == set(starts)


def test_optimal_return_averaged_over_the_starts_is_minus_6_84():
    returns = [optimal_return(DOUBLE_T, cell) for cell in DOUBLE_T.starts()]
    assert sum(returns) / len(returns) == pytest.approx(-6.84)
    # (1, 1): 2 right, 4 down, 3 right, 3 down = 12 moves; (7, 6): one move, onto the goal
    assert optimal_return(DOUBLE_T, (1, 1)) == -11.0 and optimal_return(DOUBLE_T, (7, 6)) == 0.0

    results = []
    for seed in range(EVAL_SEED, EVAL_SEED + 25):  # the same optimum, played through the environment
        env = LmrlGymMazeEnv()
        results += rollout(lambda env=env: env,
                           lambda conversations, env=env: [DOUBLE_T.optimal_moves(env.position)[0]],
                           [seed], TASK.max_turns, progress=False)
    assert all(r.success for r in results)
    assert sum(r.total_reward for r in results) / 25 == pytest.approx(-6.84)


def test_anchors_and_the_normalized_score_follow_lmrl_gym():
    anchors = lmrl_gym_maze_anchors(-83.0)
    assert (anchors.minimum, anchors.dataset, anchors.best) == (-101.0, -83.0, pytest.approx(-6.84))
    # their compute_score(-72.1, -101, -83, -6.84): above the data average, 50 + 50 * (10.9 / 76.16)
    assert anchors.normalize(-72.1) == pytest.approx(50 + 50 * (-72.1 + 83) / (-6.84 + 83))
    assert anchors.normalize(-92.0) == pytest.approx(25.0)
    assert TASK.anchors(-83.0, layout="umaze").best == pytest.approx(-2.5)  # six starts, 1 to 6 moves away


def test_the_partially_observed_maze_has_no_memoryless_optimal_policy():
    # LMRL-Gym's partially observed policies see the last 40 texts; a memoryless one sees the last text,
    # the current observation (LAST_K["full"] == 1)
    assert LAST_K == {"full": 1, "partial": 40}
    cells = DOUBLE_T.starts()
    partial = memoryless_conflicts(cells, lambda cell: describe_partial(DOUBLE_T, cell), DOUBLE_T.optimal_moves)
    corridors = "There are walls above you, below you.\n"
    assert list(partial) == [corridors]  # the horizontal corridors: right in some, left in others
    assert DOUBLE_T.optimal_moves((1, 2)) == ["move right"] and DOUBLE_T.optimal_moves((1, 4)) == ["move left"]
    assert {(1, 2), (1, 4), (5, 5), (5, 7)} <= set(partial[corridors])
    # fully observed, every observation is one cell: a lookup table is optimal
    assert memoryless_conflicts(cells, lambda cell: describe_full(DOUBLE_T, cell), DOUBLE_T.optimal_moves) == {}


def test_the_policy_sees_the_last_k_texts_as_lmrl_gym_renders_them():
    env = LmrlGymMazeEnv(observation="partial")
    messages = [{"role": "user", "content": env.reset(0)}]
    for reply in ["move right"] * 25:
        messages += [{"role": "assistant", "content": reply}, {"role": "user", "content": env.step(reply)[0]}]
    window = reference_context(messages, "partial")
    texts = [m["content"] + ("\n" if m["role"] == "assistant" else "") for m in messages]
    assert window == "".join(texts[-40:]) and window.endswith(messages[-1]["content"])
    assert window.count("move right\n") == 20
    assert reference_context(messages, "full") == messages[-1]["content"]
    # a reply that is not a move makes LMRL-Gym's environment drop the history
    messages += [{"role": "assistant", "content": "jump"}, {"role": "user", "content": env.step("jump")[0]},
                 {"role": "assistant", "content": "move left"}, {"role": "user", "content": env.step("move left")[0]}]
    assert reference_context(messages, "partial") == "".join(
        [messages[-3]["content"], "move left\n", messages[-1]["content"]])


def test_behaviour_data_averages_lmrl_gym_data_return():
    assert expected_return() == pytest.approx(-83.0, abs=0.05)
    assert expected_return(optimal_share=1.0) == pytest.approx(-6.84)
    episodes = generate_episodes(400, seed=0, progress=False)
    returns = [e.total_reward for e in episodes]
    # a seeded sample: mean within 5 (three standard errors; returns spread about 34) of -83
    assert sum(returns) / len(returns) == pytest.approx(-83.0, abs=5.0)
    assert min(returns) == -101.0 and 0.2 < sum(e.success for e in episodes) / len(episodes) < 0.5
    first = episodes[0].messages
    assert first[0]["content"].startswith("The goal is at position 8, 6. Your current position is at position")
    assert {m["content"] for m in first if m["role"] == "assistant"} <= set(MOVES)
    partial = generate_episodes(5, seed=0, observation="partial", progress=False)
    assert [e.total_reward for e in partial] == returns[:5]  # the same walks, told without positions
    assert partial[0].messages[0]["content"] == describe_partial(
        DOUBLE_T, next(c for c in DOUBLE_T.starts() if describe_full(DOUBLE_T, c) == first[0]["content"]))


def test_behaviour_policy_mixes_shortest_moves_and_random_ones():
    assert MazeMixturePolicy(DOUBLE_T, optimal_share=1.0).act((5, 9)) == "move left"
    random_walker = MazeMixturePolicy(DOUBLE_T, optimal_share=0.0, seed=1)
    assert {random_walker.act((5, 9)) for _ in range(200)} == set(MOVES)
    with pytest.raises(ValueError, match="optimal_share"):
        MazeMixturePolicy(DOUBLE_T, optimal_share=1.5)


def test_task_options_reach_the_environment_and_the_data():
    assert TASK.name == "lmrl_gym_maze" and TASK.options == ("layout", "observation", "optimal_share")
    env = TASK.make_env("eval", observation="partial")
    assert env.reset(EVAL_SEED) == "There are walls to your left, above you, below you.\n"
    with pytest.raises(ValueError, match="observation"):
        TASK.make_env("eval", observaton="partial")
    assert len(TASK.make_data(2, seed=3, progress=False, layout="umaze", optimal_share=1.0)) == 2


# lmrl's own maze (lmrl.tasks.maze): which layouts one move per observation solves, partially observed.
LMRL_MEMORYLESS_SOLVABLE = {"ring": True, "rooms": False, "corridors": False}


def _offered_partially_observed(layout):
    try:
        MazeEnv(layout, observation="partial")
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("layout", sorted(LMRL_LAYOUTS))
def test_which_lmrl_maze_layouts_a_memoryless_policy_solves(layout):
    assert (layout_conflicts(layout) == {}) is LMRL_MEMORYLESS_SOLVABLE[layout]
    assert _offered_partially_observed(layout) is not LMRL_MEMORYLESS_SOLVABLE[layout]


def test_ring_is_refused_partially_observed_with_what_to_use_instead():
    with pytest.raises(ValueError, match="'ring'.*rooms.*corridors.*lmrl_gym_maze"):
        MazeEnv("ring", observation="partial")
    assert MazeEnv("ring").observation == "full"


@pytest.mark.parametrize("layout", [name for name in sorted(LMRL_LAYOUTS) if _offered_partially_observed(name)])
def test_no_layout_offered_as_partially_observed_admits_a_memoryless_optimal_policy(layout):
    assert layout_conflicts(layout), f"{layout}: one move per observation is optimal everywhere"


# Reference policies: their returns on the enumerated test set (seeds EVAL_SEED.. play each start once).
def _reference_returns(rows, observation, passes=1, only=None):
    policies = {ref.name: ref for ref in TASK.reference_policies(rows, observation=observation)}
    returns = {}
    for name, ref in policies.items():
        if only and name not in only:
            continue
        episodes = rollout(lambda: TASK.make_env("eval", observation=observation), ref.policy,
                           list(range(EVAL_SEED, EVAL_SEED + 25 * passes)), TASK.max_turns, progress=False)
        returns[name] = sum(e.total_reward for e in episodes) / len(episodes)
    return policies, returns


@pytest.mark.parametrize("observation", ["full", "partial"])
def test_reference_policies_place_the_data_between_random_and_the_shortest_path(observation):
    rows = [e.as_row() for e in TASK.make_data(200, seed=0, progress=False, observation=observation)]
    policies, returns = _reference_returns(rows, observation)
    assert list(policies) == ["random", "behaviour", "optimal", "offline Q (true state)"]
    assert returns["optimal"] == pytest.approx(-6.84)  # the 100 anchor: every start once, by its shortest path
    # 200 random walks cover every (position, move): value iteration on them finds the shortest paths
    assert returns["offline Q (true state)"] == pytest.approx(-6.84)
    oracle = observation == "partial"  # the position is shown in FO, hidden in PO
    assert [policies[n].kind for n in ("random", "behaviour")] == ["reference", "reference"]
    assert policies["optimal"].upper_bound is oracle and policies["offline Q (true state)"].upper_bound is oracle
    assert policies["optimal"].policy.needs_envs is oracle


def test_random_reference_is_below_the_data_average():
    _, returns = _reference_returns([], "full", passes=40, only=["random"])  # 1,000 episodes; returns spread about 34
    assert expected_return(optimal_share=0.0) == pytest.approx(-85.89, abs=0.01)
    assert expected_return(optimal_share=0.0) < expected_return()  # the random walk's exact mean, below the data's
    assert returns["random"] == pytest.approx(-85.89, abs=3.3)  # three standard errors
    assert returns["random"] < -83.0 + 1.0


@pytest.mark.parametrize("observation", ["full", "partial"])
def test_offline_q_on_little_data_lands_between_the_data_and_the_shortest_path(observation):
    rows = [e.as_row() for e in TASK.make_data(2, seed=0, progress=False, observation=observation)]
    data = sum(m.get("reward", 0.0) for row in rows for m in row["messages"]) / len(rows)
    _, returns = _reference_returns(rows, observation)
    assert data == -96.0 and data < returns["offline Q (true state)"] < -6.84  # two walks, one reaching the goal


def test_offline_q_backs_up_only_the_data_and_leaves_out_time_outs():
    from lmrl.tasks.lmrl_gym_maze import offline_q_values

    row = {"messages": [{"role": "user", "content": describe_full(DOUBLE_T, (7, 6))},
                        {"role": "assistant", "content": "move down", "reward": 0.0}], "done": True}
    assert offline_q_values([row]) == {(7, 6): {"move down": 0.0}}
    timed_out = {"messages": [{"role": "user", "content": describe_full(DOUBLE_T, (7, 6))},
                              {"role": "assistant", "content": "move down", "reward": -1.0}], "done": True}
    assert offline_q_values([timed_out]) == {}  # the reply after the step limit is not played
    # partially observed: the start is recovered from the wall texts and the moves
    po = {"messages": [{"role": "user", "content": describe_partial(DOUBLE_T, (6, 6))},
                       {"role": "assistant", "content": "move down", "reward": -1.0},
                       {"role": "user", "content": describe_partial(DOUBLE_T, (7, 6))},
                       {"role": "assistant", "content": "move down", "reward": 0.0}], "done": True}
    assert offline_q_values([po], observation="partial") == {(6, 6): {"move down": -1.0}, (7, 6): {"move down": 0.0}}
