"""Joining the shares of a set scored by several processes (edge_fas.scoring.join_shares)."""
import numpy as np
import pytest

from edge_fas.scoring import NothingToScore, Scored, join_shares


def scored(positions, n_total=10):
    """A Scored whose every field is a function of the sample's position in the whole set."""
    p = np.asarray(positions)
    return Scored(score=p / n_total, logits=p - 5.0, label=p % 2, species=np.array([f"s{k}" for k in p]),
                  domain=np.array([f"d{k % 3}" for k in p]), data="set", statistic="var", uncertainty=p * 0.5,
                  map_peaks={"depth": p * 2.0}, index=p)


def share_of(rank, world, faceless=()):
    """What process `rank` returns: its samples rank, rank + world, ... (positions within its share), less
    those with no face."""
    mine = list(range(rank, 10, world))
    kept = [k for k, q in enumerate(mine) if q not in faceless]
    if not kept:
        return None
    out = scored([mine[k] for k in kept])
    out.index = np.asarray(kept)
    return out


@pytest.mark.parametrize("world", [2, 3, 4])
def test_shares_join_into_the_set_in_order_as_one_process_scored_it(world):
    faceless = {3, 4}  # samples with no face are left out, as one process leaves them out
    want = scored([q for q in range(10) if q not in faceless])
    got = join_shares([share_of(r, world, faceless) for r in range(world)], data="whole set")
    assert got.data == "whole set" and got.statistic == "var"
    np.testing.assert_array_equal(got.index, want.index)
    for k in ("score", "logits", "label", "species", "domain", "uncertainty"):
        np.testing.assert_array_equal(getattr(got, k), getattr(want, k), err_msg=k)
    np.testing.assert_array_equal(got.map_peaks["depth"], want.map_peaks["depth"])


def test_a_share_with_nothing_to_score_is_skipped_and_all_of_them_is_an_error():
    # world 5: share 4 holds samples 4 and 9, both faceless
    got = join_shares([share_of(r, 5, faceless={4, 9}) for r in range(5)], data="x")
    assert 4 not in got.index and 9 not in got.index and len(got) == 8
    with pytest.raises(NothingToScore, match="nothing to score"):
        join_shares([None, None], data="x")
