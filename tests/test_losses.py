"""ILQL and baseline losses (docs/design.md, section 2: Maths) on tiny hand-made tensors; expected values are worked out by hand.

Index convention of `lmrl.losses`: with T tokens, step t (0 <= t < T-1) is the state after token t and
its action is token t+1, so `action_mask[:, 1:]` marks the agent's steps and V(s_t) = values[:, t].
"""

import math
from types import SimpleNamespace

import pytest
import torch

from lmrl.losses import (
    awac_weights,
    bc_loss,
    cql_loss,
    expectile_loss,
    ilql_loss,
    monte_carlo_returns,
    next_state_values,
    q_loss,
    td_targets,
    v_loss,
)

LN3 = math.log(3.0)


def close(actual, expected, atol=1e-6):
    return torch.allclose(torch.as_tensor(actual, dtype=torch.float32),
                          torch.as_tensor(expected, dtype=torch.float32), atol=atol)


# -- expectile ---------------------------------------------------------------------------------------


def test_expectile_weighs_underestimates_by_tau_and_overestimates_by_one_minus_tau():
    u = torch.tensor([2.0, -2.0, 0.0])
    # u = +2 (target above V): 0.7 * 4 = 2.8;  u = -2 (V above target): 0.3 * 4 = 1.2;  u = 0: 0
    assert close(expectile_loss(u, tau=0.7), [2.8, 1.2, 0.0])


def test_expectile_with_tau_one_half_is_half_the_squared_error():
    u = torch.tensor([3.0, -1.0])
    assert close(expectile_loss(u, tau=0.5), [4.5, 0.5])


# -- next-state values and TD targets ----------------------------------------------------------------

# Row 0 (terminal, no padding), tokens:   0 obs | 1 obs | 2 act | 3 act | 4 obs | 5 obs | 6 act | 7 act
# Row 1 (truncated, right padded):        0 obs | 1 act | 2 act | 3 obs | 4 act | 5 act | 6 pad | 7 pad
ACTION_MASK = torch.tensor([[0, 0, 1, 1, 0, 0, 1, 1],
                            [0, 1, 1, 0, 1, 1, 0, 0]])
ATTENTION_MASK = torch.tensor([[1, 1, 1, 1, 1, 1, 1, 1],
                               [1, 1, 1, 1, 1, 1, 0, 0]])
VALUES = torch.tensor([[10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0, 17.0],
                       [20.0, 21.0, 22.0, 23.0, 24.0, 25.0, 26.0, 27.0]])
DONES = torch.tensor([1.0, 0.0])


def test_next_state_value_skips_observation_tokens_between_assistant_turns():
    next_v = next_state_values(VALUES, ACTION_MASK, ATTENTION_MASK, DONES)
    assert next_v.shape == (2, 7)
    # Row 0, step 1 (action token 2) -> the next action is token 3, taken in state 2: V = 12.
    assert next_v[0, 1] == 12.0
    # Step 2 (token 3, end of the first turn) -> the next action is token 6, taken in state 5: V = 15,
    # not V after the observation token 4 (14) nor after token 3 itself (13).
    assert next_v[0, 2] == 15.0
    # Step 5 (token 6) -> token 7, state 6: V = 16.
    assert next_v[0, 5] == 16.0


def test_next_state_value_is_zero_after_the_last_action_of_a_terminal_episode():
    next_v = next_state_values(VALUES, ACTION_MASK, ATTENTION_MASK, DONES)
    assert next_v[0, 6] == 0.0  # V after token 7 is 17, but the episode ended


def test_truncated_episode_bootstraps_from_the_value_of_its_last_real_token():
    next_v = next_state_values(VALUES, ACTION_MASK, ATTENTION_MASK, DONES)
    # Row 1 action steps are 0, 1, 3, 4 (tokens 1, 2, 4, 5).
    assert next_v[1, 0] == 21.0
    assert next_v[1, 1] == 23.0  # skips observation token 3: next action token 4, state 3
    assert next_v[1, 3] == 24.0
    # Last action (token 5): not terminal, so V of the final state = V after token 5 = 25,
    # not V at a padding position (26, 27) and not 0.
    assert next_v[1, 4] == 25.0


def test_the_same_row_marked_done_does_not_bootstrap():
    next_v = next_state_values(VALUES, ACTION_MASK, ATTENTION_MASK, torch.tensor([1.0, 1.0]))
    assert next_v[1, 4] == 0.0
    assert next_v[1, 1] == 23.0  # values inside the episode are unchanged


def test_td_targets_add_the_reward_of_the_action_token_and_the_discounted_next_value():
    rewards = torch.tensor([[0.0, 0.0, 0.0, 0.5, 0.0, 0.0, 0.0, 1.0],
                            [0.0, 0.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0]])
    next_v = next_state_values(VALUES, ACTION_MASK, ATTENTION_MASK, DONES)
    targets = td_targets(rewards, next_v, gamma=0.9)
    steps = ACTION_MASK[:, 1:].bool()
    # Row 0: step 1: 0 + 0.9*12 = 10.8;  step 2: 0.5 + 0.9*15 = 14.0;  step 5: 0.9*16 = 14.4;  step 6: 1.0 + 0
    # Row 1: step 0: 0.9*21 = 18.9;  step 1: 0.9*23 = 20.7;  step 3: 0.9*24 = 21.6;  step 4: 2.0 + 0.9*25 = 24.5
    assert close(targets[steps], [10.8, 14.0, 14.4, 1.0, 18.9, 20.7, 21.6, 24.5], atol=1e-5)


# -- Q and V losses ----------------------------------------------------------------------------------


def test_q_loss_is_the_sum_over_heads_of_the_mean_squared_td_error_on_action_steps():
    targets = torch.tensor([[1.0, 5.0, 2.0]])
    steps = torch.tensor([[True, False, True]])
    q = torch.tensor([[[2.0, 100.0, 2.0]],   # head 1 errors on action steps: 1^2, 0^2 -> mean 0.5
                      [[1.0, -7.0, 4.0]]])   # head 2: 0^2, 2^2 -> mean 2.0
    assert close(q_loss(q, targets, steps), 2.5)


def test_q_loss_ignores_observation_and_padding_steps():
    targets = torch.tensor([[1.0, 5.0, 2.0, 0.0]])
    steps = torch.tensor([[True, False, True, False]])  # step 1 is an observation, step 3 padding
    q = torch.tensor([[[2.0, 100.0, 2.0, 3.0]], [[1.0, -7.0, 4.0, -3.0]]], requires_grad=True)
    loss = q_loss(q, targets, steps)
    changed = q.detach().clone()
    changed[:, :, 1] = 1e4
    changed[:, :, 3] = -1e4
    assert close(loss, 2.5)
    assert close(q_loss(changed, targets, steps), 2.5)
    loss.backward()
    # d/dQ = 2 (Q - target) / 2 action steps on steps 0 and 2, nothing elsewhere
    assert close(q.grad, [[[1.0, 0.0, 0.0, 0.0]], [[0.0, 0.0, 2.0, 0.0]]])


def test_q_loss_does_not_backpropagate_into_the_targets():
    targets = torch.tensor([[1.0, 2.0]], requires_grad=True)
    q = torch.tensor([[[3.0, 3.0]]], requires_grad=True)
    q_loss(q, targets, torch.tensor([[True, True]])).backward()
    assert targets.grad is None or torch.all(targets.grad == 0)
    # d/dq of mean((q - t)^2) = 2 (q - t) / 2 = [2, 1]
    assert close(q.grad, [[[2.0, 1.0]]])


def test_v_loss_regresses_v_to_an_expectile_of_the_minimum_target_q():
    target_q = torch.tensor([[[3.0, 0.0, 9.0]],
                             [[1.0, 4.0, 9.0]]], requires_grad=True)  # min over heads: [1, 0, 9]
    values = torch.tensor([[0.0, 2.0, 0.0]], requires_grad=True)
    steps = torch.tensor([[True, True, False]])
    # u = min_k Q^ - V = [1, -2]: 0.7 * 1 + 0.3 * 4 = 1.9, mean over 2 action steps = 0.95
    # (the max head would give u = [3, 2] -> 0.7*(9+4)/2 = 4.55; plain MSE would give 2.5)
    loss = v_loss(target_q, values, steps, tau=0.7)
    assert close(loss, 0.95)
    loss.backward()
    assert target_q.grad is None or torch.all(target_q.grad == 0)
    # dL/dV = -2 * w * u / N: step 0: -2*0.7*1/2 = -0.7; step 1: -2*0.3*(-2)/2 = 0.6; masked step: 0
    assert close(values.grad, [[-0.7, 0.6, 0.0]])


# -- CQL and BC ---------------------------------------------------------------------------------------


def test_cql_loss_is_the_sum_over_heads_of_the_cross_entropy_of_q_on_the_data_token():
    ln2, ln3 = math.log(2.0), math.log(3.0)
    q_logits = torch.tensor([
        [[0.0, 0.0, 0.0], [ln2, 0.0, 0.0]],   # head 1
        [[0.0, ln3, 0.0], [0.0, 0.0, ln2]],   # head 2
    ])
    actions = torch.tensor([0, 1])
    # CE = log(sum exp(q)) - q[a]
    # head 1: row 1 (a=0): log(3) - 0 = ln 3;  row 2 (a=1): log(2 + 1 + 1) - 0 = ln 4   -> (ln3 + ln4) / 2
    # head 2: row 1 (a=0): log(1 + 3 + 1) - 0 = ln 5;  row 2 (a=1): log(1 + 1 + 2) - 0 = ln 4 -> (ln5 + ln4) / 2
    expected = (math.log(3) + math.log(4)) / 2 + (math.log(5) + math.log(4)) / 2
    assert close(cql_loss(q_logits, actions), expected)


def test_bc_loss_is_the_mean_cross_entropy_of_the_data_actions():
    logits = torch.tensor([[0.0, 0.0, 0.0], [math.log(3.0), 0.0, 0.0]])
    actions = torch.tensor([2, 0])
    # row 1: ln 3;  row 2: log(3 + 1 + 1) - ln 3 = ln(5/3)
    assert close(bc_loss(logits, actions), (math.log(3) + math.log(5 / 3)) / 2)


def test_bc_loss_with_weights_weighs_each_token_and_does_not_train_the_weights():
    logits = torch.tensor([[0.0, 0.0, 0.0], [math.log(3.0), 0.0, 0.0]], requires_grad=True)
    actions = torch.tensor([2, 0])
    weights = torch.tensor([2.0, 0.5], requires_grad=True)
    loss = bc_loss(logits, actions, weights)
    # (2 * ln 3 + 0.5 * ln(5/3)) / 2
    assert close(loss, (2 * math.log(3) + 0.5 * math.log(5 / 3)) / 2)
    loss.backward()
    assert weights.grad is None or torch.all(weights.grad == 0)
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_awac_weights_are_exponentiated_advantages_clipped_at_max_weight():
    advantages = torch.tensor([0.0, 1.0, -1.0, 10.0])
    # exp(0) = 1, exp(1) = e, exp(-1) = 1/e, exp(10) = 22026 -> clipped to 20
    assert close(awac_weights(advantages, awac_beta=1.0), [1.0, math.e, 1 / math.e, 20.0], atol=1e-5)
    # beta scales the advantage: exp(0.5 * 2) = e;  max_weight 3 clips e^5 to 3
    assert close(awac_weights(torch.tensor([2.0, 10.0]), awac_beta=0.5, max_weight=3.0), [math.e, 3.0], atol=1e-5)


# -- Monte-Carlo returns ------------------------------------------------------------------------------


def test_monte_carlo_returns_discount_once_per_action_token_and_skip_observations():
    # tokens: 0 obs | 1 act | 2 act (reward 2) | 3 obs | 4 act | 5 act (reward 1)
    action_mask = torch.tensor([[0, 1, 1, 0, 1, 1]])
    rewards = torch.tensor([[0.0, 0.0, 2.0, 0.0, 0.0, 1.0]])
    returns = monte_carlo_returns(rewards, action_mask, gamma=0.5)
    assert returns.shape == (1, 5)
    steps = action_mask[:, 1:].bool()
    # step 4 (token 5): 1
    # step 3 (token 4): 0 + 0.5 * 1 = 0.5
    # step 2 is the observation token 3: not discounted
    # step 1 (token 2): 2 + 0.5 * 0.5 = 2.25        (discounting the observation too would give 2.125)
    # step 0 (token 1): 0 + 0.5 * 2.25 = 1.125
    assert close(returns[steps], [1.125, 2.25, 0.5, 1.0])


def test_monte_carlo_returns_ignore_padding_after_the_episode():
    action_mask = torch.tensor([[0, 1, 1, 0], [0, 1, 1, 1]])
    rewards = torch.tensor([[0.0, 0.0, 4.0, 0.0], [0.0, 0.0, 0.0, 4.0]])
    returns = monte_carlo_returns(rewards, action_mask, gamma=0.5)
    # row 0: [0.5 * 4, 4];  row 1: [0.25 * 4, 0.5 * 4, 4]
    assert close(returns[action_mask[:, 1:].bool()], [2.0, 4.0, 1.0, 2.0, 4.0])


# -- the full ILQL objective --------------------------------------------------------------------------


def fake_batch():
    """One terminal episode of T=5 tokens: 0 obs | 1 act | 2 act (reward 1) | 3 obs | 4 act (reward 2).

    Steps (L=4) 0, 1, 3 are actions; step 2 (token 3) is an observation. gamma = 0.5:
      next V:   step 0 -> V[1] = 2;  step 1 -> V[3] = 4 (skips token 3);  step 3 -> 0 (terminal)
      targets:  step 0: 0 + 0.5*2 = 1;  step 1: 1 + 0.5*4 = 3;  step 3: 2 + 0 = 2
      L_Q:      head 1 errors (2-1, 3-3, 0-2) -> (1 + 0 + 4)/3;  head 2 (1-1, 5-3, 2-2) -> (0 + 4 + 0)/3;  sum 3
      L_V:      min_k Q^ = (2, 1, 4), V(s) = (1, 2, 4), u = (1, -1, 0) -> (0.7 + 0.3 + 0)/3 = 1/3
      L_CQL:    zero Q logits over 3 tokens -> ln 3 per head, 2 heads -> 2 ln 3
      L_BC:     zero LM logits -> ln 3
    """
    batch = {
        "input_ids": torch.tensor([[0, 1, 2, 0, 1]]),
        "attention_mask": torch.ones(1, 5, dtype=torch.long),
        "action_mask": torch.tensor([[0, 1, 1, 0, 1]]),
        "rewards": torch.tensor([[0.0, 0.0, 1.0, 0.0, 2.0]]),
        "dones": torch.tensor([1.0]),
    }
    outputs = SimpleNamespace(
        q_values=torch.tensor([[[2.0, 3.0, 99.0, 0.0]], [[1.0, 5.0, -99.0, 2.0]]], requires_grad=True),
        target_q_values=torch.tensor([[[3.0, 1.0, 0.0, 4.0]], [[2.0, 6.0, 0.0, 5.0]]], requires_grad=True),
        v_values=torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0]], requires_grad=True),
        q_logits=torch.zeros(2, 3, 3, requires_grad=True),  # [K, N action steps, V]
        policy_logits=torch.zeros(3, 3, requires_grad=True),  # [N action steps, V]
    )
    return outputs, batch


def test_ilql_loss_is_q_plus_v_plus_weighted_cql_plus_bc():
    outputs, batch = fake_batch()
    loss, stats = ilql_loss(outputs, **batch, tau=0.7, gamma=0.5, cql_weight=0.1, bc_weight=1.0)
    assert {"loss/q", "loss/v", "loss/cql", "loss/bc", "values/q", "values/v", "values/advantage"} <= set(stats)
    assert close(stats["loss/q"], 3.0)
    assert close(stats["loss/v"], 1 / 3)
    assert close(stats["loss/cql"], 2 * LN3)
    assert close(stats["loss/bc"], LN3)
    assert close(loss, 3.0 + 1 / 3 + 0.1 * 2 * LN3 + LN3)
    assert close(loss, stats["loss/q"] + stats["loss/v"] + 0.1 * stats["loss/cql"] + stats["loss/bc"])
    # values/q: min_k Q on action steps (1, 3, 0) -> 4/3;  values/v: (1 + 2 + 4)/3;  advantage: mean u = 0
    assert close(stats["values/q"], 4 / 3)
    assert close(stats["values/v"], 7 / 3)
    assert close(stats["values/advantage"], 0.0)
    assert all(not value.requires_grad for value in stats.values())


def test_ilql_loss_without_bc_weight_has_no_bc_term():
    outputs, batch = fake_batch()
    loss, stats = ilql_loss(outputs, **batch, tau=0.7, gamma=0.5)  # defaults: cql 0.1, bc 0
    assert "loss/bc" not in stats
    assert close(loss, 3.0 + 1 / 3 + 0.1 * 2 * LN3)


def test_td_target_is_detached_so_v_learns_only_from_the_expectile_loss():
    outputs, batch = fake_batch()
    loss, _ = ilql_loss(outputs, **batch, tau=0.7, gamma=0.5, cql_weight=0.1, bc_weight=1.0)
    loss.backward()
    # dL_V/dV(s_t) = -2 * w_t * u_t / 3 on action steps:
    #   V[0]: -2 * 0.7 * 1 / 3;  V[1]: -2 * 0.3 * (-1) / 3 = 0.2;  V[3]: u = 0 -> 0
    #   V[2] (observation state) and V[4] (after the terminal action) get nothing.
    # V[1] and V[3] are also the next-state values in the TD targets of steps 0 and 1; had the target
    # not been detached, the Q errors there (head 1: +1 at step 0, head 2: +2 at step 1) would add to them.
    assert close(outputs.v_values.grad, [[-1.4 / 3, 0.2, 0.0, 0.0, 0.0]])
    assert outputs.target_q_values.grad is None or torch.all(outputs.target_q_values.grad == 0)
    # Q learns from the TD error: d/dQ_1 at step 0 = 2 * (2 - 1) / 3
    assert close(outputs.q_values.grad[0, 0, 0], 2 / 3)


def test_truncated_row_bootstraps_in_ilql_without_training_the_final_value():
    outputs, batch = fake_batch()
    batch["dones"] = torch.tensor([0.0])
    loss, stats = ilql_loss(outputs, **batch, tau=0.7, gamma=0.5, cql_weight=0.0)
    # step 3 target becomes 2 + 0.5 * V[4] = 2 + 2.5 = 4.5: head 1 error (0 - 4.5)^2 = 20.25,
    # head 2 (2 - 4.5)^2 = 6.25 -> L_Q = (1 + 0 + 20.25)/3 + (0 + 4 + 6.25)/3 = 31.5/3 = 10.5
    assert close(stats["loss/q"], 10.5, atol=1e-5)
    loss.backward()
    assert outputs.v_values.grad[0, 4] == 0.0


@pytest.mark.parametrize("tau", [0.5, 0.9])
def test_ilql_tau_is_passed_to_the_expectile(tau):
    outputs, batch = fake_batch()
    # fake_batch has u = (1, -1, 0), whose loss is 1/3 for any tau; make both errors positive instead
    outputs.v_values = torch.tensor([[1.0, 0.0, 3.0, 4.0, 5.0]])  # u = (1, 1, 0) -> 2 tau / 3
    _, stats = ilql_loss(outputs, **batch, tau=tau, gamma=0.5)
    assert close(stats["loss/v"], 2 * tau / 3)


def test_diagnostics_compare_data_and_sampled_advantages_and_measure_dr3():
    from lmrl.losses import ilql_diagnostics

    # tokens: [obs, act, act, obs, act]; steps (state t -> token t+1) with actions: t = 0, 1, 3
    action_mask = torch.tensor([[0, 1, 1, 0, 1]])
    input_ids = torch.tensor([[0, 1, 2, 0, 1]])
    hidden = torch.tensor([[[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.0, 0.0]]])  # phi per position
    values = torch.zeros(1, 5)
    q_values = torch.tensor([[[1.0, 2.0, 0.0, 3.0]], [[5.0, 5.0, 5.0, 5.0]]])  # min over heads = first
    # the policy puts all its mass on token 2, whose Q is 7 at every action state
    policy_logits = torch.full((3, 3), -1e9)  # [N action steps, V]
    policy_logits[:, 2] = 0.0
    q_logits = torch.tensor([[[0.0, 0.0, 7.0]] * 3] * 2)
    outputs = SimpleNamespace(q_values=q_values, v_values=values, policy_logits=policy_logits, q_logits=q_logits,
                              hidden_states=hidden)
    stats = ilql_diagnostics(outputs, input_ids, action_mask)
    assert stats["diagnostics/advantage_data"] == pytest.approx((1.0 + 2.0 + 3.0) / 3)
    assert stats["diagnostics/advantage_sampled"] == pytest.approx(7.0)
    # consecutive action states: 0 -> 1 (phi . phi = 1*2 = 2), 1 -> 3 (2*3 = 6); step 3 has no next
    assert stats["diagnostics/dr3"] == pytest.approx((2.0 + 6.0) / 2)
