"""Tests of qkv.arithmetic, chapter 5's experiments: the no-position encoder provably cannot tell
swapped-digit pairs apart, the other models can, the causal model is not permutation-invariant,
decoding is self-consistent, and a tiny training run learns (step budgets and seeds only); the
digit-sum task and models of the length experiment."""

import pytest
import torch

from qkv.arithmetic import (
    POSITIONS,
    SCHEMES,
    ArithmeticDecoder,
    ArithmeticEncoder,
    DigitSumModel,
    ExperimentConfig,
    LengthConfig,
    accuracy_by_position,
    build_model,
    digit_sum_batch,
    evaluate_model,
    multiset_bound,
    position_modules,
    predict,
    train_length_model,
    train_model,
)
from qkv.positional import ALiBi, RotaryEmbedding, T5RelativeBias
from qkv.data.synthetic import ArithmeticTask


@pytest.fixture(scope="module")
def task():
    return ArithmeticTask(max_operand=100, seed=0)


def pair_questions(task, count=64):
    i, j = task.swapped_pairs("test")
    data = task.split("test")
    return data.questions[i[:count]], data.questions[j[:count]]


def model_for(task, positions, causal=False, layers=2):
    config = ExperimentConfig(positions=positions, causal=causal, d_model=16, num_heads=2,
                              num_layers=layers, d_ff=32, seed=1)
    return build_model(task, config).double().eval()


def test_without_positions_the_encoder_gives_swapped_pairs_identical_logits(task):
    first, second = pair_questions(task)
    model = model_for(task, "none")
    torch.testing.assert_close(model(first), model(second), atol=1e-12, rtol=0)
    assert not torch.equal(first, second)


@pytest.mark.parametrize("positions", ["sinusoidal", "learned", "rotary"])
def test_with_positions_the_encoder_separates_swapped_pairs(task, positions):
    first, second = pair_questions(task)
    model = model_for(task, positions)
    assert (model(first) - model(second)).abs().amax(dim=(1, 2)).gt(1e-6).all()


def test_the_causal_model_without_positions_is_not_permutation_invariant(task):
    first, second = pair_questions(task)
    two_layers = model_for(task, "none", causal=True)
    assert (two_layers(first)[:, -1] - two_layers(second)[:, -1]).abs().amax(1).gt(1e-6).all()
    # With one layer the last position's output IS a function of the multiset (same keys and
    # values, all visible): depth is what lets the mask reveal the order.
    one_layer = model_for(task, "none", causal=True, layers=1)
    torch.testing.assert_close(one_layer(first)[:, -1], one_layer(second)[:, -1], atol=1e-12,
                               rtol=0)


def test_evaluation_of_an_untrained_position_free_encoder(task):
    model = model_for(task, "none").float()
    scores = evaluate_model(model, task)
    assert scores["pairs_same"] == 1.0 and scores["pairs_both"] == 0.0
    assert 0.0 <= scores["exact"] <= 1.0


def test_shapes_and_attention_weights(task):
    encoder = model_for(task, "rotary")
    questions = task.split("test").questions[:5]
    logits, weights = encoder(questions, need_weights=True)
    length = task.question_length + task.answer_width
    assert logits.shape == (5, task.answer_width, len(task.vocab))
    assert len(weights) == 2 and weights[0].shape == (5, 2, length, length)
    decoder = model_for(task, "learned", causal=True)
    tokens = torch.cat([questions, task.split("test").answers[:5, :-1]], 1)
    logits, weights = decoder(tokens, need_weights=True)
    assert logits.shape == (5, length - 1, len(task.vocab))
    assert torch.equal(weights[0][0, 0].triu(1), torch.zeros(length - 1, length - 1,
                                                             dtype=torch.float64))


def test_greedy_decoding_is_consistent_with_teacher_forcing(task):
    decoder = model_for(task, "sinusoidal", causal=True)
    questions = task.split("test").questions[:20]
    answers = decoder.predict(questions)
    assert answers.shape == (20, task.answer_width)
    logits = decoder(torch.cat([questions, answers[:, :-1]], 1))[:, task.question_length - 1:]
    assert torch.equal(logits.argmax(-1), answers)
    assert torch.equal(predict(decoder, task.split("test"))[:20], answers)


def test_loss_is_the_cross_entropy_of_the_answer_characters(task):
    encoder = model_for(task, "none")
    data = task.split("train")
    questions, answers = data.questions[:8], data.answers[:8]
    log_p = encoder(questions).log_softmax(-1)
    expected = -log_p.gather(-1, answers[..., None]).mean()
    torch.testing.assert_close(encoder.loss(questions, answers), expected)


@pytest.mark.parametrize("causal", [False, True])
def test_a_tiny_run_learns_small_additions(causal):
    task = ArithmeticTask(max_operand=10, ops="+", test_fraction=0.2, seed=0)
    config = ExperimentConfig(positions="rotary", causal=causal, d_model=32, num_heads=2,
                              num_layers=2, d_ff=64, steps=250, batch_size=32, lr=1e-2,
                              warmup_steps=20, seed=0)
    model, history = train_model(task, config)
    assert history.loss[-1] < 0.3 * history.loss[0]
    assert evaluate_model(model, task, "train")["exact"] >= 0.9



def test_a_dry_run_caps_the_steps_and_the_warm_up(monkeypatch):
    monkeypatch.setenv("QKV_DRY_RUN_STEPS", "3")
    task = ArithmeticTask(max_operand=10, ops="+", test_fraction=0.2, seed=0)
    config = ExperimentConfig(positions="none", d_model=16, num_heads=2, num_layers=1, d_ff=32,
                              steps=1500, warmup_steps=200, batch_size=8)
    _, history = train_model(task, config, eval_every=1)
    assert history.steps == [1, 2, 3] and [e["step"] for e in history.evals] == [1, 2, 3]

def test_errors(task):
    with pytest.raises(ValueError, match="positions must be one of none, sinusoidal"):
        ArithmeticEncoder(10, 6, 3, positions="relative")
    model = model_for(task, "none")
    with pytest.raises(ValueError, match=r"questions must have 6 tokens per row; got \(2, 5\)"):
        model(torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="questions must be an int64 tensor"):
        model(torch.zeros(2, 6))
    with pytest.raises(ValueError, match="tokens must be an int64 tensor"):
        ArithmeticDecoder(10, 6, 3)(torch.zeros(6, dtype=torch.long))
    assert POSITIONS == ("none", "sinusoidal", "learned", "rotary")


def test_multiset_bound_counts_the_best_answer_per_group():
    task = ArithmeticTask(max_operand=30, ops="+-", test_fraction=0.5, seed=0)
    bound = multiset_bound(task, "train")
    data = task.split("train")
    # brute force: for each question, is its answer the most common of its character group?
    keys = ["".join(sorted(task.vocab.decode(q))) for q in data.questions]
    answers = data.result.tolist()
    best = 0
    for key in set(keys):
        group = [a for k, a in zip(keys, answers) if k == key]
        best += max(group.count(a) for a in set(group))
    assert bound == pytest.approx(best / len(data)) and 0.5 < bound < 1.0
    with torch.no_grad():
        model = model_for(task, "none").float()
    assert evaluate_model(model, task, "train")["exact"] <= bound


# ------------------------------------------------------------------ the length experiment

def test_digit_sum_targets_add_each_digit_to_the_one_before():
    tokens, targets = digit_sum_batch(4, 7, torch.Generator().manual_seed(0))
    assert tokens.shape == targets.shape == (4, 7) and tokens.dtype == torch.long
    for row, target in zip(tokens.tolist(), targets.tolist()):
        assert target == [(a + b) % 10 for a, b in zip([0] + row[:-1], row)]
    again, _ = digit_sum_batch(4, 7, torch.Generator().manual_seed(0))
    assert torch.equal(again, tokens)


def test_position_modules_give_each_scheme_its_place():
    for positions in SCHEMES:
        added, hooked = position_modules(positions, 16, 4, max_len=12, causal=True)
        assert isinstance(added, torch.nn.Identity) == (positions not in ("sinusoidal", "learned"))
        kinds = {"rotary": RotaryEmbedding, "alibi": ALiBi, "t5": T5RelativeBias}
        assert type(hooked) is kinds[positions] if positions in kinds else hooked is None
    _, t5 = position_modules("t5", 16, 4, max_len=12, causal=True)
    assert not t5.bidirectional and t5.max_distance == 12
    with pytest.raises(ValueError, match="positions must be one of none, sinusoidal, learned, "
                                         "rotary, alibi, t5"):
        position_modules("relative", 16, 4, 12)


@pytest.mark.parametrize("positions", SCHEMES)
def test_digit_sum_models_are_causal_and_only_learned_positions_reject_longer_inputs(positions):
    torch.manual_seed(0)
    model = DigitSumModel(positions, train_length=6, d_model=16, num_heads=2, num_layers=2,
                          d_ff=32).double().eval()
    tokens, _ = digit_sum_batch(3, 6, torch.Generator().manual_seed(1))
    logits = model(tokens)
    assert logits.shape == (3, 6, 10)
    changed = tokens.clone()
    changed[:, 4:] = (changed[:, 4:] + 1) % 10   # later digits do not change earlier answers
    torch.testing.assert_close(model(changed)[:, :4], logits[:, :4])
    if positions == "learned":
        with pytest.raises(ValueError, match="max_len=6"):
            model(torch.zeros(1, 7, dtype=torch.long))
    else:
        assert model(torch.zeros(1, 30, dtype=torch.long)).shape == (1, 30, 10)


def test_accuracy_by_position_of_a_model_that_always_answers_right():
    class Oracle(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.unused = torch.nn.Parameter(torch.zeros(1))

        def forward(self, tokens):
            previous = torch.nn.functional.pad(tokens[:, :-1], (1, 0))
            return torch.nn.functional.one_hot((previous + tokens) % 10, 10).float()

    accuracy = accuracy_by_position(Oracle(), 9, num_sequences=16)
    assert accuracy.shape == (9,) and torch.all(accuracy == 1)


def test_a_tiny_length_run_learns_the_trained_lengths():
    config = LengthConfig(positions="alibi", train_length=8, d_model=32, num_heads=4,
                          num_layers=2, d_ff=64, steps=300, batch_size=32, lr=1e-2,
                          warmup_steps=30, seed=0)
    model, history = train_length_model(config)
    assert history.loss[-1] < 0.3 * history.loss[0]
    assert accuracy_by_position(model, 8, num_sequences=128).mean() > 0.8  # chance: 0.1
