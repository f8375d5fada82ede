"""identity_shift: CSIM(output, driver) - CSIM(source, driver), per-frame mean."""

from __future__ import annotations

import numpy as np
import pytest

from plugtalk.metrics.identity_shift import shift_from_embeddings


def _unit(v):
    v = np.asarray(v, float)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_identity_shift_is_zero_for_the_source_and_positive_toward_the_driver():
    rng = np.random.default_rng(0)
    src = _unit(rng.normal(size=(1, 8)))
    drv = _unit(rng.normal(size=(5, 8)))
    same_as_source = shift_from_embeddings(np.repeat(src, 5, 0), src, drv)
    assert same_as_source.frames == 5 and abs(same_as_source.mean) < 1e-12
    copy_of_driver = shift_from_embeddings(drv, src, drv)
    expected = 1 - (drv @ src[0])
    np.testing.assert_allclose(copy_of_driver.per_frame, expected)
    assert copy_of_driver.mean > 0
    # frames without a face (NaN rows) are left out of the mean
    out = drv.copy()
    out[1] = np.nan
    r = shift_from_embeddings(out, src, drv)
    assert r.frames == 4 and np.isnan(r.per_frame[1])
    np.testing.assert_allclose(r.mean, np.delete(expected, 1).mean())


@pytest.mark.slow
def test_identity_shift_on_real_faces_of_two_people():
    """The demo pair (astronaut source, carphone driver): an output that copies the driver shifts toward it,
    one that copies the source does not."""
    from plugtalk.animate import DrivingClip, prepare_source
    from plugtalk.demo import demo_driving_path, demo_source
    from plugtalk.metrics.identity_shift import identity_shift

    src = prepare_source(demo_source(), 192).crop
    drv = next(DrivingClip(demo_driving_path(), 192, max_frames=3).batches(3))[0]
    toward_driver = identity_shift(drv, src, drv)
    assert toward_driver.frames == 3 and toward_driver.mean > 0.02
    np.testing.assert_allclose(toward_driver.output_to_driver, 1.0, atol=1e-9)
    keeps_source = identity_shift(np.stack([src] * 3), src, drv)
    assert abs(keeps_source.mean) < 1e-9
