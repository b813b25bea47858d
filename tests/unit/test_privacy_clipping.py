"""Per-client flat L2 clipping (McMahan et al. 2018, Algorithm 1)."""

import numpy as np
import pytest

from fl_sim.privacy import clip_update, global_norm

SHAPES = [(7, 5), (5,), (2, 3, 4)]


def test_global_norm_exact_small_case():
    # Prepare
    update = [np.array([3.0, 0.0], np.float32), np.array([[4.0]], np.float32)]
    # Execute
    norm = global_norm(update)
    # Assert
    assert norm == 5.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_clipped_update_has_norm_at_most_c(dtype):
    # Prepare: norms spread over six orders of magnitude around C
    r = np.random.default_rng(0)
    clip = 0.7
    for k in range(400):
        scale = 10.0 ** r.uniform(-3, 3)
        update = [(scale * r.normal(size=s)).astype(dtype) for s in SHAPES]
        # Execute
        clipped, norm, was = clip_update(update, clip)
        # Assert
        after = global_norm(clipped)
        assert after <= clip, (k, norm, after)
        assert was == (norm > clip)
        assert [c.dtype for c in clipped] == [dtype] * len(SHAPES)
        if was:
            np.testing.assert_allclose(after, clip, rtol=1e-5)
            # direction kept: the whole update is scaled by one factor
            for c, u in zip(clipped, update):
                np.testing.assert_allclose(c, u * (clip / norm), rtol=2e-5, atol=1e-12)
        else:
            for c, u in zip(clipped, update):
                np.testing.assert_array_equal(c, u)


def test_clip_exact_small_case_and_boundary():
    # Prepare
    u = [np.array([3.0, 4.0])]
    # Execute
    clipped, norm, was = clip_update(u, 1.0)
    at_c, _, was_at_c = clip_update(u, 5.0)
    # Assert
    np.testing.assert_allclose(clipped[0], [0.6, 0.8], rtol=1e-15)
    assert norm == 5.0 and was
    np.testing.assert_array_equal(at_c[0], u[0])
    assert not was_at_c  # norm == C counts as unclipped (as tensorflow-privacy)


def test_clip_rejects_bad_input():
    with pytest.raises(ValueError):
        clip_update([np.array([1.0, np.nan])], 1.0)
    with pytest.raises(ValueError):
        clip_update([np.array([1.0])], 0.0)
