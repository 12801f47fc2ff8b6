"""CHAI: the critic's losses by hand, the proposal cache, the trainer and propose-and-rank decoding."""

import math

import pytest
import torch

from lmrl import CHAIConfig, CHAICritic, CHAICriticConfig, CHAITrainer, ProposeAndRank
from lmrl.generation import CriticScorer, ILQLScorer, sample_replies
from lmrl.generation.replies import prompt_ids
from lmrl.losses.chai import candidate_cql_loss, chai_loss, chai_targets, critic_td_loss
from lmrl.tasks.negotiation import negotiation_features
from lmrl.trainers.chai import build_candidate_sets, build_chai_dataset, episode_states, new_critic


# ---------------------------------------------------------------- losses, computed by hand
def test_target_takes_the_best_next_proposal_under_the_smaller_target_q():
    next_q = torch.tensor([[[1.0, 5.0, 2.0]], [[3.0, 4.0, 0.0]]])  # [n=2, B=1, K=3]
    # min over heads: [1, 4, 0] -> max over proposals = 4
    assert chai_targets(torch.tensor([0.5]), torch.tensor([0.0]), next_q, gamma=0.9).item() == pytest.approx(0.5 + 0.9 * 4)


def test_masked_candidates_are_left_out_of_the_max():
    next_q = torch.tensor([[[9.0, 1.0, 2.0]], [[9.0, 1.0, 2.0]]])
    mask = torch.tensor([[0.0, 1.0, 1.0]])
    assert chai_targets(torch.zeros(1), torch.zeros(1), next_q, next_mask=mask, gamma=1.0).item() == 2.0


def test_nothing_is_bootstrapped_after_a_terminal_reply():
    next_q = torch.full((2, 2, 3), 100.0)
    targets = chai_targets(torch.tensor([1.0, 1.0]), torch.tensor([1.0, 0.0]), next_q, gamma=0.5)
    assert targets.tolist() == [1.0, 51.0]


def test_brac_bonus_prefers_proposals_the_proposal_lm_finds_likely():
    next_q = torch.tensor([[[1.0, 1.2]], [[1.0, 1.2]]])
    logp = torch.tensor([[-0.1, -3.0]])
    plain = chai_targets(torch.zeros(1), torch.zeros(1), next_q, logp, gamma=1.0)
    penalized = chai_targets(torch.zeros(1), torch.zeros(1), next_q, logp, gamma=1.0, brac_weight=0.5)
    assert plain.item() == pytest.approx(1.2)
    assert penalized.item() == pytest.approx(max(1.0 - 0.05, 1.2 - 1.5))


def test_cql_over_candidates_is_logsumexp_minus_the_data_reply():
    q = torch.tensor([[[0.0, 1.0, 2.0]], [[1.0, 1.0, 1.0]]])  # data reply at index 0
    expected = (math.log(1 + math.e + math.e**2) - 0.0) + (math.log(3 * math.e) - 1.0)
    assert candidate_cql_loss(q).item() == pytest.approx(expected)


def test_td_loss_sums_heads_and_averages_transitions():
    q_data = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    assert critic_td_loss(q_data, torch.tensor([0.0, 1.0])).item() == pytest.approx((1 + 1) / 2 + (0 + 1) / 2)


def test_chai_loss_combines_terms_and_reports_them():
    q = torch.randn(2, 4, 3, requires_grad=True)
    loss, stats = chai_loss(q, torch.randn(2, 4, 5), torch.rand(4), torch.zeros(4), cql_weight=0.5)
    assert loss.item() == pytest.approx((stats["loss/td"] + 0.5 * stats["loss/cql"]).item(), rel=1e-5)
    loss.backward()
    assert q.grad is not None and torch.isfinite(q.grad).all()


# ---------------------------------------------------------------- the critic model
def test_critic_saves_loads_and_polyak_averages_its_targets(tmp_path):
    critic = CHAICritic(CHAICriticConfig(embedding_size=8, num_features=2, hidden_size=16, features="negotiation"))
    x = (torch.randn(3, 8), torch.randn(3, 4, 8), torch.randn(3, 4, 2))
    assert torch.equal(critic(*x), critic(*x, target=True))
    with torch.no_grad():
        for p in critic.q.parameters():
            p.add_(1.0)
    before = [p.clone() for p in critic.target_q.parameters()]
    critic.update_target_heads(0.25)
    for old, new, online in zip(before, critic.target_q.parameters(), critic.q.parameters()):
        torch.testing.assert_close(new, 0.75 * old + 0.25 * online)
    critic.save_pretrained(tmp_path)
    loaded = CHAICritic.from_pretrained(tmp_path)
    assert loaded.config.features == "negotiation"
    torch.testing.assert_close(loaded(*x), critic(*x))
    torch.testing.assert_close(loaded(*x, target=True), critic(*x, target=True))
    with pytest.raises(ValueError, match="expects 2 features"):
        critic(x[0], x[1], None)


# ---------------------------------------------------------------- data: states, transitions, proposals
ROWS = [
    {"messages": [{"role": "system", "content": "You are selling: desk. Listed at $200. Sell it."},
                  {"role": "user", "content": "Would you take $100?"},
                  {"role": "assistant", "content": "I can do $180."},
                  {"role": "user", "content": "How about $150?"},
                  {"role": "assistant", "content": "Deal.", "reward": 0.75}]},
    {"messages": [{"role": "user", "content": "Would you take $50?"},
                  {"role": "assistant", "content": "No."}], "done": False},
]


def test_each_reply_is_a_transition_to_the_state_before_the_next_reply():
    states, transitions = episode_states(ROWS)
    assert [len(s) for s in states] == [2, 4, 1, 2]  # the last is the truncated row's bootstrap state
    assert transitions == [
        {"state": 0, "reply": "I can do $180.", "reward": 0.0, "done": False, "next_state": 1},
        {"state": 1, "reply": "Deal.", "reward": 0.75, "done": True, "next_state": -1},
        {"state": 2, "reply": "No.", "reward": 0.0, "done": False, "next_state": 3},
    ]
    assert states[3][-1] == {"role": "assistant", "content": "No."}


@pytest.fixture(scope="module")
def proposal_lm():
    from lmrl.models.tiny import build_tiny

    model, tokenizer = build_tiny(ROWS * 4, hidden_size=32, num_layers=1, vocab_size=300)
    return model.eval(), tokenizer


def test_sampled_reply_log_probs_match_a_forward_pass(proposal_lm):
    from lmrl.data import encode_prompt

    model, tokenizer = proposal_lm
    conversation = ROWS[0]["messages"][:2]
    torch.manual_seed(0)
    replies, logp = sample_replies(model, tokenizer, [conversation], k=3, max_new_tokens=6)
    assert len(replies[0]) == 3 and logp.shape == (1, 3)
    # recompute the first reply's mean token log-prob (the sampled tokens, up to the first EOS)
    torch.manual_seed(0)
    prompt = torch.tensor([encode_prompt(tokenizer, conversation)])
    out = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=True, top_k=0,
                         num_return_sequences=3, max_new_tokens=6, pad_token_id=tokenizer.pad_token_id)
    tokens = out[0, prompt.shape[1]:].tolist()
    if tokenizer.eos_token_id in tokens:
        tokens = tokens[: tokens.index(tokenizer.eos_token_id) + 1]
    full = torch.tensor([prompt[0].tolist() + tokens])
    logits = model(full, attention_mask=torch.ones_like(full)).logits[0, prompt.shape[1] - 1 : -1].log_softmax(-1)
    expected = logits.gather(-1, torch.tensor(tokens)[:, None]).mean()
    assert logp[0, 0].item() == pytest.approx(expected.item(), abs=1e-4)


def test_rollout_policy_and_proposal_sampling_generate_the_same_replies_for_the_same_seed(proposal_lm):
    from lmrl.generation.policy import GeneratePolicy

    model, tokenizer = proposal_lm
    conversations = [ROWS[0]["messages"][:2], ROWS[1]["messages"][:1]]  # prompts of different lengths: left-padded
    torch.manual_seed(3)
    proposals, _ = sample_replies(model, tokenizer, conversations, k=1, temperature=0.7, max_new_tokens=6)
    policy = GeneratePolicy(model, tokenizer, max_new_tokens=6, do_sample=True, temperature=0.7, top_k=0, top_p=1.0)
    torch.manual_seed(3)
    assert policy(conversations) == [p[0] for p in proposals]
    torch.manual_seed(4)
    assert policy(conversations) != [p[0] for p in proposals]  # another seed, other replies: the check can fail


def test_proposals_are_sampled_once_and_then_read_from_the_cache(proposal_lm, tmp_path, monkeypatch):
    import lmrl.trainers.chai as chai_module

    model, tokenizer = proposal_lm
    calls = []
    real = chai_module.sample_replies
    monkeypatch.setattr(chai_module, "sample_replies", lambda *a, **k: calls.append(1) or real(*a, **k))
    args = CHAIConfig(output_dir=str(tmp_path), num_proposals=3, proposal_max_new_tokens=6, report_to="none",
                      critic_features="negotiation")
    first = build_chai_dataset(ROWS, model, tokenizer, args, negotiation_features)
    second = build_chai_dataset(ROWS, model, tokenizer, args, negotiation_features)
    assert len(calls) == 1 and len(list((tmp_path / "proposals").glob("*.safetensors"))) == 1
    assert second.proposals == first.proposals
    for key, value in first.tensors.items():
        torch.testing.assert_close(second.tensors[key], value)
    item = first[0]
    assert item["candidates"].shape == (4, 32) and item["features"].shape == (4, 8)
    assert item["next_candidates"].shape == (4, 32)  # the data's next reply, then the proposals
    torch.testing.assert_close(item["next_candidates"][0], first.tensors["reply_embedding"][1])
    assert item["next_mask"].tolist() == [1, 1, 1, 1]
    assert first[2]["next_mask"].tolist() == [0, 1, 1, 1]  # truncated row: no data reply in its last state
    terminal = first[1]
    assert terminal["dones"] == 1 and terminal["next_context"].abs().sum() == 0
    build_chai_dataset(ROWS, model, tokenizer, CHAIConfig(output_dir=str(tmp_path), num_proposals=2,
                                                          proposal_max_new_tokens=6, report_to="none"))
    assert len(calls) == 2  # other settings: sampled again


def test_chai_trainer_trains_saves_and_decodes_by_propose_and_rank(proposal_lm, tmp_path):
    model, tokenizer = proposal_lm
    args = CHAIConfig(output_dir=str(tmp_path / "chai"), num_proposals=3, proposal_max_new_tokens=6,
                      num_train_epochs=3, per_device_train_batch_size=2, report_to="none", save_strategy="no",
                      critic_features="negotiation", logging_steps=1, critic_hidden_size=16)
    trainer = CHAITrainer(proposal_model=model, args=args, train_dataset=ROWS * 3, processing_class=tokenizer,
                          features=negotiation_features)
    before = [p.detach().clone() for p in trainer.model.q.parameters()]
    result = trainer.train()
    assert math.isfinite(result.training_loss)
    assert any(not torch.equal(b, p) for b, p in zip(before, trainer.model.q.parameters()))
    logged = {k for entry in trainer.state.log_history for k in entry}
    assert {"loss/td", "loss/cql", "values/q_data", "rank/data_is_best"} <= logged
    trainer.save_model()
    critic = CHAICritic.from_pretrained(tmp_path / "chai")  # reads no task: the name is for information
    assert critic.config.features == "negotiation" and critic.config.num_features == 8
    with pytest.raises(ValueError, match=r"trained with 8 features per reply \(negotiation\).*features="):
        ProposeAndRank(model, tokenizer, critic, k=4, max_new_tokens=6)
    policy = ProposeAndRank(model, tokenizer, critic, k=4, max_new_tokens=6, features=negotiation_features)
    conversations = [ROWS[0]["messages"][:2], ROWS[1]["messages"][:1]]
    proposed = []
    propose = policy.propose
    policy.propose = lambda conversations: proposed.append(propose(conversations)) or proposed[-1]
    replies = policy(conversations)
    candidates = proposed[0]
    assert all(len(set(c)) > 1 for c in candidates)  # the proposals differ, so ranking them means something
    # the saved critic scores as the trained one does, and the policy keeps each state's best-scored candidate
    trained = CriticScorer(trainer.model, model, tokenizer, features=negotiation_features)(conversations, candidates)
    torch.testing.assert_close(policy.scorer(conversations, candidates), trained)
    assert replies == [c[int(i)] for c, i in zip(candidates, trained.argmax(dim=-1))]


def test_chai_trainer_takes_the_proposal_lm_and_the_critic_explicitly(proposal_lm, tmp_path):
    model, tokenizer = proposal_lm
    args = CHAIConfig(output_dir=str(tmp_path / "chai"), num_proposals=2, proposal_max_new_tokens=4, max_steps=3,
                      per_device_train_batch_size=2, report_to="none", save_strategy="no", critic_hidden_size=8)
    candidates, none = build_candidate_sets(ROWS, None, model, tokenizer, args)
    assert none is None
    critic = new_critic(candidates, args, model)
    trainer = CHAITrainer(proposal_model=model, critic=critic, args=args, train_dataset=ROWS,
                          processing_class=tokenizer)
    assert trainer.model is critic and trainer.proposal_model is model
    assert not any(p.requires_grad for p in model.parameters())  # the proposal LM stays frozen
    # the trainer trains on the candidate set the function builds (read back from its cache)
    assert trainer.train_dataset.proposals == candidates.proposals
    for key, value in candidates.tensors.items():
        torch.testing.assert_close(trainer.train_dataset.tensors[key], value)
    before = [p.detach().clone() for p in critic.q.parameters()]
    trainer.train()
    assert any(not torch.equal(b, p) for b, p in zip(before, critic.q.parameters()))  # the critic given is trained


def test_chai_trainer_is_given_the_feature_function_and_does_not_look_a_task_up_by_name(proposal_lm, tmp_path):
    model, tokenizer = proposal_lm
    args = CHAIConfig(output_dir=str(tmp_path / "chai"), num_proposals=2, proposal_max_new_tokens=4, max_steps=1,
                      report_to="none", save_strategy="no", critic_hidden_size=8, critic_features="negotiation",
                      proposal_cache_dir=str(tmp_path / "proposals"))
    with pytest.raises(ValueError, match=r"critic_features='negotiation' names a task.*features="):
        CHAITrainer(proposal_model=model, args=args, train_dataset=ROWS, processing_class=tokenizer)
    # a user's own feature function, with no task: the reply's length and whether it names a price
    args.critic_features = None

    def reply_shape(messages, reply):
        return [len(reply) / 10, float("$" in reply)]

    trainer = CHAITrainer(proposal_model=model, args=args, train_dataset=ROWS, processing_class=tokenizer,
                          features=reply_shape)
    assert trainer.model.config.num_features == 2
    assert trainer.model.config.features.endswith("reply_shape")  # recorded, for information
    assert trainer.train_dataset[0]["features"][0].tolist() == pytest.approx(reply_shape([], "I can do $180."))
    with pytest.raises(ValueError, match="reads 2 features per reply"):  # continuing it needs the same function
        CHAITrainer(proposal_model=model, critic=trainer.model, args=args, train_dataset=ROWS,
                    processing_class=tokenizer)
    with pytest.raises(ValueError, match="trained without reply features"):
        CriticScorer(new_critic(build_candidate_sets(ROWS, None, model, tokenizer, args)[0], args, model), model,
                     tokenizer, features=reply_shape)


def test_propose_and_rank_keeps_the_best_scored_candidate_or_samples_by_score(proposal_lm):
    model, tokenizer = proposal_lm

    def prefer_longest(conversations, candidates):
        return torch.tensor([[float(len(c)) for c in cs] for cs in candidates])

    policy = ProposeAndRank(model, tokenizer, prefer_longest, k=5, max_new_tokens=6)
    seen = {}
    policy.propose = lambda conversations: [["a", "abc", "ab"] for _ in conversations]  # fixed candidates
    assert policy([ROWS[0]["messages"][:2]]) == ["abc"]
    policy.temperature = 1000.0  # near-uniform sampling over the candidates
    for _ in range(60):
        seen[policy([ROWS[0]["messages"][:2]])[0]] = True
    assert set(seen) == {"a", "abc", "ab"}


def test_utterance_level_ilql_scores_a_reply_by_the_sum_of_its_advantages(proposal_lm):
    from lmrl import AutoModelForCausalLMWithILQLHeads

    model, tokenizer = proposal_lm
    ilql = AutoModelForCausalLMWithILQLHeads.from_causal_lm(model)
    with torch.no_grad():
        for head in ilql.q_heads:
            head.bias.normal_()
    conversation = ROWS[0]["messages"][:2]
    scores = ILQLScorer(ilql, tokenizer)([conversation], [["I can do $180.", "Deal."]])
    assert scores.shape == (1, 2)
    # by hand for the second candidate
    scorer = ILQLScorer(ilql, tokenizer)
    ids, mask = scorer._tokens(conversation, "Deal.")
    with torch.no_grad():
        out = ilql(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                   action_mask=torch.tensor([mask]), compute_q_logits=False)
    advantage = out.q_values.min(0).values[0] - out.v_values[0, :-1]
    expected = sum(advantage[i - 1] for i in range(1, len(ids)) if mask[i])
    assert scores[0, 1].item() == pytest.approx(float(expected), abs=1e-5)
    last_q = ILQLScorer(ilql, tokenizer, score="q")([conversation], [["Deal."]])
    assert last_q[0, 0].item() == pytest.approx(out.q_values.min(0).values[0, -1].item(), abs=1e-5)


def test_proposals_sampled_in_several_batches_come_back_in_the_callers_order(proposal_lm):
    """Across batches, conversations are sampled in order of prompt length; the replies and their
    log-probabilities must come back in the order asked (near-zero temperature: the greedy replies)."""
    from lmrl.generation.policy import GeneratePolicy

    model, tokenizer = proposal_lm
    conversations = [ROWS[0]["messages"][:4], ROWS[1]["messages"][:1], ROWS[0]["messages"][:2],
                     ROWS[1]["messages"][:1] + [{"role": "assistant", "content": "$120."}, ROWS[1]["messages"][0]]]
    lengths = [len(prompt_ids(tokenizer, c)) for c in conversations]
    assert lengths != sorted(lengths)  # the sampling order differs from the callers'
    torch.manual_seed(0)
    replies, logp = sample_replies(model, tokenizer, conversations, k=1, temperature=1e-6, max_new_tokens=6,
                                   batch_size=1)
    greedy = GeneratePolicy(model, tokenizer, max_new_tokens=6)
    assert [r[0] for r in replies] == [greedy([c])[0] for c in conversations]
    one_by_one = [sample_replies(model, tokenizer, [c], k=1, temperature=1e-6, max_new_tokens=6)[1] for c in conversations]
    torch.testing.assert_close(logp, torch.cat(one_by_one))


def test_a_critic_of_the_features_alone_runs_no_embedding_pass_and_ranks_by_them(proposal_lm, tmp_path, monkeypatch):
    """The baseline that shows what CHAI's embeddings add: the same critic, loss and proposals, fed the
    task's features only."""
    import lmrl.generation.propose as propose
    import lmrl.trainers.chai as chai

    model, tokenizer = proposal_lm
    with pytest.raises(ValueError, match="critic_embeddings=False leaves the critic only the reply features"):
        CHAITrainer(proposal_model=model, args=CHAIConfig(output_dir=str(tmp_path / "x"), critic_embeddings=False),
                    train_dataset=ROWS, processing_class=tokenizer)
    with pytest.raises(ValueError, match="feature_cache holds context embeddings"):
        CHAIConfig(output_dir=str(tmp_path / "x"), critic_embeddings=False, critic_features="negotiation",
                   feature_cache=str(tmp_path / "cache"))
    with pytest.raises(ValueError, match="both 0, so the critic would read nothing"):
        CHAICriticConfig(embedding_size=0, num_features=0)

    def no_embedding(*args, **kwargs):
        raise AssertionError("a critic of the features alone embedded a text")

    for module in (chai, propose):
        monkeypatch.setattr(module, "embed_replies", no_embedding)
        monkeypatch.setattr(module, "embed_contexts", no_embedding)
    args = CHAIConfig(output_dir=str(tmp_path / "chai"), num_proposals=3, proposal_max_new_tokens=6,
                      num_train_epochs=3, per_device_train_batch_size=2, report_to="none", save_strategy="no",
                      critic_features="negotiation", critic_embeddings=False, critic_hidden_size=16)
    trainer = CHAITrainer(proposal_model=model, args=args, train_dataset=ROWS * 3, processing_class=tokenizer,
                          features=negotiation_features)
    assert (trainer.model.config.embedding_size, trainer.model.config.num_features) == (0, 8)
    assert trainer.model.q[0][0].in_features == 8  # the MLP reads the 8 features and nothing else
    before = [p.detach().clone() for p in trainer.model.q.parameters()]
    assert math.isfinite(trainer.train().training_loss)
    assert any(not torch.equal(b, p) for b, p in zip(before, trainer.model.q.parameters()))
    trainer.save_model()
    critic = CHAICritic.from_pretrained(tmp_path / "chai")
    conversations = [ROWS[0]["messages"][:2], ROWS[1]["messages"][:1]]
    candidates = [["I can do $180.", "Deal.", "The price is firm at $240."], ["Hello.", "$200 and it is yours.", "No."]]
    scores = CriticScorer(critic, model, tokenizer, features=negotiation_features)(conversations, candidates)
    features = torch.tensor([[negotiation_features(c, r) for r in rs] for c, rs in zip(conversations, candidates)])
    torch.testing.assert_close(scores, critic.q[0](features).squeeze(-1).minimum(critic.q[1](features).squeeze(-1)))
