"""The input pipeline (cydas_chain/core/loader.py): uint8 batches normalised on the device give what the
float32 pipeline gave; augmentation seeded per image, whatever the loader processes; no draw from the
process's random stream."""
import numpy as np
import pytest
import torch
from torchvision import transforms as T

from cydas_chain.core.data import TensorImageDataset, build_transforms, normalize_uint8
from cydas_chain.core.loader import EpochSampler, SeededSamples, make_loader


def images(n=12, size=20, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


@pytest.mark.parametrize("kind", ["embedded", "cifar", "imagenet", "timm"])
def test_device_normalisation_equals_the_float_pipeline(kind):
    """The eval transforms of every kind, uint8 then normalised by the loader, against ToTensor + Normalize of
    the same crop (float32)."""
    tf = build_transforms(16, kind)
    data = TensorImageDataset(images(), list(range(12)), tf.eval)
    x, y = next(iter(make_loader(data, 12, device=torch.device("cpu"), mean=tf.mean, std=tf.std)))
    assert x.dtype == torch.float32 and y.tolist() == list(range(12))
    reference = torch.stack([T.Normalize(tf.mean, tf.std)(tf.eval(_pil(data, i)).float() / 255) for i in range(12)])
    torch.testing.assert_close(x, reference, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(normalize_uint8(torch.stack([tf.eval(_pil(data, i)) for i in range(12)]),
                                               tf.mean, tf.std), reference, atol=1e-5, rtol=1e-5)


def _pil(data, i):
    from PIL import Image
    return Image.fromarray(data.images[i])


def test_cutout_fills_with_the_mean_so_that_the_square_is_zero_after_normalisation():
    tf = build_transforms(16, "cifar", cutout=8)
    torch.manual_seed(0)
    x = tf.train(_pil(TensorImageDataset(images(1, 16), [0]), 0))
    z = normalize_uint8(x[None], tf.mean, tf.std)[0]
    filled = (x == torch.tensor(tf.mean_pixel(), dtype=torch.uint8).view(3, 1, 1)).all(0)
    assert filled.sum() >= 16  # a square (clipped at the border) was cut out
    assert z[:, filled].abs().max() < 0.5 / 255 / min(tf.std) + 1e-6  # DARTS' zero, up to rounding


def test_augmentation_is_seeded_per_image_whatever_the_loader_processes():
    tf = build_transforms(16, "imagenet", crop_scale=0.08)
    data = SeededSamples(TensorImageDataset(images(), list(range(12))), seed=3, transform=tf.train)
    sampler = EpochSampler(list(range(12)), epoch=5)
    batches = {}
    for workers in (0, 2):
        torch.manual_seed(123)
        before = torch.get_rng_state()
        loader = make_loader(data, 4, device=torch.device("cpu"), mean=tf.mean, std=tf.std, sampler=sampler,
                             workers=workers)
        batches[workers] = torch.cat([x for x, _ in loader])
        assert torch.equal(torch.get_rng_state(), before)  # the process's stream (dropout, drop-path) untouched
    torch.testing.assert_close(batches[0], batches[2], atol=0, rtol=0)
    assert torch.equal(data[(5, 7)][0], data[(5, 7)][0]) and not torch.equal(data[(5, 7)][0], data[(6, 7)][0])
