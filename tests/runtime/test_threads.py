"""The default thread rule: batch-1 U-Net calls on one thread, everything else on onnxruntime's
default; a fixed --threads applies to every session."""

import numpy as np

from ubdiff_onnx.runtime.backends import thread_plan
from ubdiff_onnx.runtime.sampler import BundleSampler


def test_thread_plan():
    assert thread_plan("unet", 0) == (0, 1)
    assert thread_plan("velocity_decoder", 0) == (0, None) and thread_plan("seismic_decoder", 0) == (0, None)
    assert thread_plan("unet", 2) == (2, None)


def test_batch1_unet_session_gives_the_same_numbers(tiny_fp32_bundle):
    auto, fixed = BundleSampler(tiny_fp32_bundle, threads=0), BundleSampler(tiny_fp32_bundle, threads=1)
    unet = auto.components["unet"]
    assert unet.batch1_threads == 1 and unet._batch1_session is None
    x = np.random.default_rng(0).standard_normal((3, 1, auto.latent_dim)).astype(np.float32)
    one = np.concatenate([auto.unet(x[i:i + 1], 100) for i in range(3)])
    assert unet._batch1_session is not None
    np.testing.assert_allclose(one, auto.unet(x, 100), rtol=0, atol=1e-5)
    np.testing.assert_allclose(one, fixed.unet(x, 100), rtol=0, atol=1e-5)
