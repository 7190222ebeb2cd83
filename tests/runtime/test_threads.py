"""The default thread rule (one thread per component; the U-Net on the whole pool from batch 8, as
measured); a fixed --threads applies to every session."""

import numpy as np

from ubdiff_onnx.runtime.backends import BATCHED_UNET_MIN_BATCH, component_threads


def test_component_threads():
    assert [component_threads(c, 0) for c in ("unet", "velocity_decoder", "seismic_decoder")] == [1, 1, 1]
    assert [component_threads(c, 0, BATCHED_UNET_MIN_BATCH) for c in ("unet", "velocity_decoder", "seismic_decoder")] == [0, 1, 1]
    assert [component_threads(c, 2, 16) for c in ("unet", "velocity_decoder", "seismic_decoder")] == [2, 2, 2]


def test_unet_gets_a_pool_session_for_large_batches_only(tiny_fp32_bundle):
    from ubdiff_onnx.runtime.sampler import BundleSampler

    smp = BundleSampler(tiny_fp32_bundle)
    unet = smp.components["unet"]
    assert list(unet.sessions) == [1]
    small = list(smp.sample(2, steps=3, seed=0, batch_size=2))
    assert list(unet.sessions) == [1]
    big = list(smp.sample(BATCHED_UNET_MIN_BATCH, steps=3, seed=0, batch_size=BATCHED_UNET_MIN_BATCH))
    assert sorted(unet.sessions) == [0, 1] and list(smp.components["seismic_decoder"].sessions) == [1]
    # the same numbers whichever session ran them (sample i depends on (seed, i) only)
    np.testing.assert_allclose(big[0].latent[:2], small[0].latent, rtol=0, atol=1e-5)
