"""The introspective teacher rule, in every case, and the K-best board."""
import math

import pytest
import torch

from cydas_chain.chain.board import Board, Entry, ReplacementRule, beats, mcnemar_p

PAPER_RULE = ReplacementRule("none")


def board_with_teacher(score=50.0, macs=300, size=1, rule=PAPER_RULE):
    b = Board(Entry((1,) * 20, macs, step=0), size, rule)
    b.rescore([score])
    return b


@pytest.mark.parametrize("d_score, d_macs, replaced", [
    (+1, -10, True), (+1, 0, True), (+1, +10, False),     # better score
    (0, -10, False), (0, 0, False), (0, +10, False),      # equal score: not better
    (-1, -10, False), (-1, 0, False), (-1, +10, False),   # worse score
])
def test_replacement_rule(d_score, d_macs, replaced):
    b = board_with_teacher(50.0, 300)
    cand = Entry((2,) * 20, 300 + d_macs, 50.0 + d_score, step=7)
    assert beats(cand, b.teacher) == replaced
    assert b.offer(cand) == replaced
    assert (b.teacher == cand) == replaced
    assert len(b.entries) == 1
    assert len(b.history) == 1 + replaced
    if replaced:
        h = b.history[-1]
        expected = (7, cand.score, cand.macs, [2] * 20, "teacher")
        assert (h["step"], h["score"], h["macs"], h["path"], h["event"]) == expected


def test_mcnemar_p_values_by_hand():
    assert mcnemar_p(0, 0) == 1.0
    assert mcnemar_p(3, 0) == 1 / 8                      # P(X >= 3), X ~ Bin(3, 1/2)
    assert mcnemar_p(2, 1) == 4 / 8                      # (C(3,2) + C(3,3)) / 8
    assert mcnemar_p(0, 5) == 1.0
    assert mcnemar_p(9, 1) == pytest.approx(11 / 1024)   # (C(10,9) + C(10,10)) / 2^10
    assert mcnemar_p(15, 5) == pytest.approx((15504 + 4845 + 1140 + 190 + 20 + 1) / 2 ** 20)  # C(20, 15..20)


# (wins, losses) on the images where the two paths disagree, at alpha 0.05:
# 9-1 is significant (p 0.011), 6-3 is not (p 0.25) although its score is higher.
@pytest.mark.parametrize("wins, losses, d_macs, replaced", [
    (9, 1, -10, True), (9, 1, 0, True), (9, 1, +10, False),      # better beyond the test
    (6, 3, -10, False), (6, 3, 0, False), (6, 3, +10, False),    # better within the noise
    (3, 3, -10, False), (3, 3, 0, False),                        # equal
    (1, 9, -10, False), (1, 9, 0, False), (1, 9, +10, False),    # worse
])
def test_replacement_rule_with_the_paired_test(wins, losses, d_macs, replaced):
    n = 100
    b = board_with_teacher(50.0, 300, rule=ReplacementRule("mcnemar", 0.05))
    cand = Entry((2,) * 20, 300 + d_macs, 50.0 + 100 * (wins - losses) / n, step=7)
    assert b.offer(cand, {(1,) * 20: (wins, losses)}) == replaced
    assert (b.teacher == cand) == replaced
    # the paper's bare rule takes every higher score with no more MACs
    bare = board_with_teacher(50.0, 300)
    assert bare.offer(cand) == (wins > losses and d_macs <= 0)


# The released code's escape (acc_gap): a path with more MACs replaces when it is > gap points better.
@pytest.mark.parametrize("d_score, d_macs, replaced", [
    (+6, +10, True), (+5, +10, False), (+4, +10, False),  # more MACs: only beyond the gap
    (+1, 0, True), (+1, -10, True), (0, -10, False),       # no more MACs: the paper's rule, unchanged
])
def test_replacement_gap_for_more_macs(d_score, d_macs, replaced):
    b = board_with_teacher(50.0, 300, rule=ReplacementRule("none", gap=5.0))
    cand = Entry((2,) * 20, 300 + d_macs, 50.0 + d_score, step=7)
    assert b.offer(cand) == replaced
    # with the paired test as well: a 60-40 split of 100 disagreements is significant (p 0.028)
    paired = board_with_teacher(50.0, 300, rule=ReplacementRule("mcnemar", 0.05, gap=5.0))
    assert paired.offer(cand, {(1,) * 20: (60, 40)}) == replaced
    assert not board_with_teacher(50.0, 300, rule=ReplacementRule("mcnemar", 0.05, gap=5.0)).offer(
        cand, {(1,) * 20: (11, 9)})  # the same scores with 20 disagreements: within the noise


def test_rule_options_are_checked():
    with pytest.raises(ValueError, match="one of mcnemar, none"):
        ReplacementRule("margin")
    with pytest.raises(ValueError, match="alpha"):
        ReplacementRule("mcnemar", 0.0)
    with pytest.raises(ValueError, match="gap"):
        ReplacementRule("mcnemar", 0.05, gap=-1.0)


def test_unscored_teacher_loses_to_any_scored_path_within_budget():
    b = Board(Entry((1,) * 20, 300), 1)
    assert math.isnan(b.teacher.score)
    assert not b.offer(Entry((2,) * 20, 301, 0.0, 1))
    assert b.offer(Entry((3,) * 20, 300, 0.0, 2))


def test_same_path_is_not_added_twice():
    b = board_with_teacher(10.0, 300, size=3)
    assert not b.offer(Entry((1,) * 20, 300, 90.0, 5))
    assert len(b.entries) == 1


def test_k_best_board():
    b = board_with_teacher(10.0, 300, size=3)
    # filling: any evaluated path enters; the best-scoring entry is the teacher
    assert b.offer(Entry((2,) * 20, 350, 20.0, 1))
    assert b.teacher.path == (2,) * 20
    assert b.offer(Entry((3,) * 20, 200, 5.0, 2))
    assert [e.score for e in b.entries] == [20.0, 10.0, 5.0]
    # full: a candidate must beat the worst entry (score higher, MACs <= the worst's)
    assert not b.offer(Entry((4,) * 20, 250, 30.0, 3))   # more MACs than the worst (200)
    assert b.offer(Entry((5,) * 20, 150, 6.0, 4))        # replaces the worst
    assert [e.path[0] for e in b.entries] == [2, 1, 5]
    assert b.history[-1]["event"] == "board"
    # re-scoring with new weights reorders the board and may change the teacher
    b.rescore([1.0, 2.0, 3.0])
    assert b.teacher.path == (5,) * 20
    assert [h["path"][0] for h in b.teacher_history()] == [1, 2]


def test_state_round_trip(tmp_path):
    b = board_with_teacher(10.0, 300, size=2)
    b.offer(Entry((2,) * 20, 250, 12.0, 3))
    torch.save(b.state_dict(), tmp_path / "b.pth")
    c = Board(Entry((0,) * 20, 1), 1)
    c.load_state_dict(torch.load(tmp_path / "b.pth", weights_only=True))
    assert c.entries == b.entries and c.history == b.history and c.size == 2


def test_board_size_must_be_positive():
    with pytest.raises(ValueError):
        Board(Entry((1,) * 20, 1), 0)
