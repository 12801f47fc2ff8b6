"""Maze task: BFS optimum, environment rules, behaviour data."""

import pytest

from lmrl.tasks.maze import Maze, MazeEnv, generate_maze_episodes, maze_anchors, parse_position


def test_bfs_distances_on_a_hand_made_maze():
    grid = ("#####",
            "#..G#",
            "#.#.#",
            "#...#",
            "#####")
    maze = Maze(grid, (1, 3), ())
    distances = maze.distances()
    # (3,1) -> up (2,1) -> up (1,1) -> right (1,2) -> right (1,3): 4; or along the bottom: 4 as well
    assert distances[(3, 1)] == 4 and distances[(1, 1)] == 2 and distances[(3, 3)] == 2 and distances[(1, 3)] == 0
    assert (2, 2) not in distances  # a wall
    assert sorted(maze.optimal_moves((3, 1))) == ["right", "up"]


def test_ring_layout_is_shorter_one_way_round():
    maze = Maze.from_layout("ring")
    distances = maze.distances()
    assert maze.goal == (1, 1)
    assert distances[(5, 3)] == 6  # left along the bottom, up the left side
    assert distances[(5, 5)] == 8  # the far corner: 8 either way
    assert maze.optimal_moves((5, 3)) == ["left"]
    assert maze_anchors("ring", dataset_return=-10.0).best == -(6 + 3 + 3) / 3  # eval starts (5,3) (1,4) (4,1)


def test_env_rules_walls_invalid_text_and_goal():
    env = MazeEnv("ring", starts="eval")
    env.position = (1, 2)
    assert env.step("up") == ("You are at (1, 2).", -1.0, False, {})  # wall: stay, pay
    observation, reward, done, info = env.step("fly away")
    assert info == {"invalid": True} and reward == -1.0 and not done and env.position == (1, 2)
    assert observation.endswith("You are at (1, 2).")
    assert env.step(" Left.") == ("You reached the goal.", -1.0, True, {"success": True})


def test_partial_observation_shows_only_the_open_moves():
    env = MazeEnv("rooms", observation="partial")
    env.position = (4, 2)
    assert env.observe() == "Open: up, down."
    assert "(" not in env.system_prompt


def test_evaluation_starts_are_held_out_of_the_data():
    env = MazeEnv("ring", starts="train")
    episodes = generate_maze_episodes(60, progress=False)
    starts = {parse_position(e.messages[1]["content"]) for e in episodes}
    assert starts <= set(env.starts) and not starts & set(Maze.from_layout("ring").eval_starts)


def test_detour_walkers_take_the_long_way_and_noisy_walkers_without_noise_the_short_way():
    maze = Maze.from_layout("ring")
    to_goal = maze.distances()
    waypoint = (5, 5)  # farthest from the goal
    to_waypoint = Maze(maze.grid, waypoint, ()).distances()
    for episode in generate_maze_episodes(30, detour_share=1.0, progress=False):
        start = parse_position(episode.messages[1]["content"])
        assert episode.total_reward == -min(20, to_waypoint[start] + to_goal[waypoint])
    for episode in generate_maze_episodes(30, detour_share=0.0, epsilon=0.0, progress=False):
        start = parse_position(episode.messages[1]["content"])
        assert episode.total_reward == -to_goal[start]


def test_behaviour_data_is_suboptimal_by_the_intended_amount():
    episodes = generate_maze_episodes(400, seed=3, progress=False)
    mean = sum(e.total_reward for e in episodes) / len(episodes)
    maze = Maze.from_layout("ring")
    optimum = -sum(maze.distances()[s] for s in maze.train_starts()) / len(maze.train_starts())
    assert -12.0 < mean < -8.5  # about 6 moves worse than the optimum (~-4), far better than never arriving
    assert optimum > mean + 4
    rows = [e.as_row() for e in episodes]
    assert all(row["messages"][-1]["role"] == "assistant" for row in rows)
    assert any(not row["done"] for row in rows) and any(row["done"] for row in rows)


def test_unknown_layout_is_an_error_naming_the_choices():
    with pytest.raises(ValueError, match="ring"):
        MazeEnv("nope")


def test_partially_observed_data_shows_only_the_open_moves_and_still_reaches_the_goal():
    episodes = generate_maze_episodes(20, layout="rooms", observation="partial", detour_share=0.0, epsilon=0.0,
                                      progress=False)
    observations = [m["content"] for e in episodes for m in e.messages if m["role"] == "user"]
    assert all(o.startswith("Open: ") for o in observations)
    assert all(e.success for e in episodes)
