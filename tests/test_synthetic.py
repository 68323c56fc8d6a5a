"""Tests of qkv.data.synthetic: answers are right, splits are deterministic and disjoint, swapped
pairs are what they claim, batches are functions of the step, and bad arguments are rejected."""

import pytest
import torch

from qkv.data.synthetic import (
    ArithmeticTask,
    CharVocab,
    SequenceBatch,
    SequenceTask,
    epoch_batches,
    pad_batch,
)


@pytest.fixture(scope="module")
def task():
    return ArithmeticTask(max_operand=100, seed=0)


def equations(task, split):
    data = task.split(split)
    return [task.text(split, i) for i in range(len(data))]


def test_vocab_encodes_and_decodes():
    vocab = CharVocab("ab")
    assert len(vocab) == 5 and (vocab.pad_id, vocab.bos_id, vocab.eos_id) == (0, 1, 2)
    assert vocab.encode("bab") == [4, 3, 4]
    assert vocab.decode([1, 4, 3, 2, 0]) == "ba"
    assert vocab.decode(torch.tensor([1, 3]), skip_specials=False) == "<bos>a"
    with pytest.raises(ValueError, match=r"outside the vocabulary: \['c'\]"):
        vocab.encode("abc")
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 5\)"):
        vocab.decode([7])
    with pytest.raises(ValueError, match="tokens must be distinct"):
        CharVocab("aa")


def test_every_answer_is_correct(task):
    for split in ("train", "test"):
        for text in equations(task, split):
            question, answer = text.split("=")
            op = "+" if "+" in question else "-"
            a, b = (int(x) for x in question.split(op))
            assert int(answer) == (a + b if op == "+" else a - b), text


def test_formats_have_fixed_widths(task):
    assert (task.operand_width, task.answer_width, task.question_length) == (2, 3, 6)
    data = task.split("test")
    assert data.questions.shape == (len(data), 6) and data.answers.shape == (len(data), 3)
    texts = set(equations(task, "train"))
    assert {"12+01=013", "05-37=-32", "99+99=198", "00-99=-99"} <= texts | set(
        equations(task, "test"))


def test_lsd_first_reverses_the_answer_only():
    msd, lsd = ArithmeticTask(20, seed=1), ArithmeticTask(20, lsd_first=True, seed=1)
    for split in ("train", "test"):
        torch.testing.assert_close(lsd.split(split).answers, msd.split(split).answers.flip(-1))
        torch.testing.assert_close(lsd.split(split).questions, msd.split(split).questions)
    data = lsd.split("train")
    assert lsd.answer_text(data.answers[0]) == msd.answer_text(msd.split("train").answers[0])
    assert lsd.text("train", 0)[-3:] == msd.text("train", 0)[-3:][::-1]


def test_split_is_deterministic_disjoint_and_complete(task):
    train, test = set(equations(task, "train")), set(equations(task, "test"))
    assert not train & test
    assert len(train) + len(test) == 2 * 100 * 100
    assert len(test) / (len(train) + len(test)) == pytest.approx(0.2, abs=0.01)
    again = ArithmeticTask(max_operand=100, seed=0)
    assert equations(again, "test") == equations(task, "test")
    other = ArithmeticTask(max_operand=100, seed=1)
    assert set(equations(other, "test")) != test


def test_swapped_pairs_are_digit_permutations_with_different_answers(task):
    i, j = task.swapped_pairs("test")
    assert len(i) > 500 and (i < j).all()
    data = task.split("test")
    for x, y in zip(i.tolist(), j.tolist()):
        qx, qy = task.vocab.decode(data.questions[x]), task.vocab.decode(data.questions[y])
        assert qx != qy and sorted(qx) == sorted(qy)  # same characters, another order
        assert qx[:2] == qy[1::-1] and qx[2:] == qy[2:]  # first operand read backwards
        assert data.result[x] != data.result[y]


def test_both_members_of_every_pair_are_in_the_same_split(task):
    questions = {split: {text[:6] for text in equations(task, split)}
                 for split in ("train", "test")}
    for question in questions["train"]:
        assert question[1::-1] + question[2:] not in questions["test"]  # its partner
    train_pairs, test_pairs = task.swapped_pairs("train"), task.swapped_pairs("test")
    # 10 * 9 non-palindromic first operands, each pair counted once, for 100 b and 2 ops
    assert len(train_pairs[0]) + len(test_pairs[0]) == 45 * 100 * 2


def test_addition_only_and_subtraction_only():
    plus = ArithmeticTask(10, ops="+", test_fraction=0.3)
    assert plus.answer_width == 2 and not plus.split("train").minus.any()
    minus = ArithmeticTask(10, ops="-", test_fraction=0.3)
    assert minus.answer_width == 2 and minus.split("test").minus.all()
    assert len(plus.split("train")) + len(plus.split("test")) == 100


def test_batches_are_a_function_of_the_step(task):
    batch = task.batches(32, seed=4)
    questions, answers = batch(7)
    assert questions.shape == (32, 6) and answers.shape == (32, 3)
    again = task.batches(32, seed=4)
    assert torch.equal(again(7)[0], questions) and not torch.equal(batch(8)[0], questions)


def test_epoch_batches_visit_every_item_once_per_epoch():
    indices = epoch_batches(10, 4, seed=0)
    first_epoch = torch.cat([indices(0), indices(1), indices(2)[:2]])
    assert sorted(first_epoch.tolist()) == list(range(10))
    assert len(indices(2)) == 4  # completed from the next epoch
    assert torch.equal(indices(5), epoch_batches(10, 4, seed=0)(5))


def test_arithmetic_errors():
    with pytest.raises(ValueError, match="ops must be"):
        ArithmeticTask(10, ops="*")
    with pytest.raises(ValueError, match="max_operand must be an int >= 2"):
        ArithmeticTask(1)
    with pytest.raises(ValueError, match="test_fraction must be a float in"):
        ArithmeticTask(10, test_fraction=1.0)
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        ArithmeticTask(10).split("valid")


# ------------------------------------------------------------------------ copy / reverse

@pytest.mark.parametrize("kind", ["copy", "reverse"])
def test_sequence_task_targets_and_disjoint_splits(kind):
    task = SequenceTask(kind, num_symbols=5, min_len=2, max_len=6, size=300, seed=2)
    train, test = task.split("train"), task.split("test")
    assert len(train) == 240 and len(test) == 60
    assert not {tuple(s) for s, _ in train} & {tuple(s) for s, _ in test}
    for source, target in train + test:
        assert 2 <= len(source) <= 6 and min(source) >= len(task.vocab.specials)
        assert target == (source if kind == "copy" else source[::-1])
    again = SequenceTask(kind, num_symbols=5, min_len=2, max_len=6, size=300, seed=2)
    assert again.split("test") == test


def test_sequence_batches_are_padded():
    task = SequenceTask("reverse", num_symbols=4, min_len=1, max_len=5, size=100)
    batch = task.batches(8, seed=1)(3)
    assert isinstance(batch, SequenceBatch) and batch.source.shape[0] == 8
    lengths = batch.source_valid.sum(1)
    assert torch.equal(lengths, batch.target_valid.sum(1))
    assert (batch.source[~batch.source_valid] == task.vocab.pad_id).all()
    for row in range(8):
        n = int(lengths[row])
        assert torch.equal(batch.target[row, :n], batch.source[row, :n].flip(0))


def test_pad_batch_and_sequence_errors():
    ids, valid = pad_batch([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert valid.tolist() == [[True, True, True], [True, False, False]]
    with pytest.raises(ValueError, match="sequences is empty"):
        pad_batch([])
    with pytest.raises(ValueError, match="kind must be 'copy' or 'reverse'"):
        SequenceTask("sort")
    with pytest.raises(ValueError, match="more than half of the"):
        SequenceTask(num_symbols=2, min_len=1, max_len=2, size=4)
    with pytest.raises(ValueError, match="num_symbols must be at most 26"):
        SequenceTask(num_symbols=27)


def test_swapped_pairs_when_a_reversed_operand_is_out_of_range():
    task = ArithmeticTask(max_operand=30, ops="+", test_fraction=0.5, seed=0)
    pairs = [task.swapped_pairs(split) for split in ("train", "test")]
    # first operands with a partner below 30: 01-02 <-> 10-20, 12 <-> 21; 3 pairs x 30 b
    assert sum(len(i) for i, _ in pairs) == 3 * 30
    for split, (i, j) in zip(("train", "test"), pairs):
        data = task.split(split)
        assert (data.a[i] // 10 == data.a[j] % 10).all()
        assert (data.a[i] % 10 == data.a[j] // 10).all()
