import numpy as np
import torch
from PIL import Image

from ireid.retriever.transforms import CLIP_MEAN, CLIP_STD, ImageTransform, normalize, random_erase, to_tensor


def gradient_image(w=32, h=64):
    x = np.zeros((h, w, 3), dtype=np.uint8)
    x[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
    x[..., 1] = np.linspace(0, 255, h, dtype=np.uint8)[:, None]
    return Image.fromarray(x)


def test_eval_transform_is_resize_and_normalise():
    image = Image.new("RGB", (32, 64), (255, 0, 128))
    x = ImageTransform((128, 64))(image)
    assert x.shape == (3, 128, 64)
    expected = [(v / 255 - m) / s for v, m, s in zip((255, 0, 128), CLIP_MEAN, CLIP_STD, strict=True)]
    assert torch.allclose(x[:, 5, 5], torch.tensor(expected), atol=1e-5)


def test_flip_and_crop_move_pixels_and_pad_is_black():
    t = ImageTransform((64, 32), train=True, pad=10, flip_p=1.0, erase_p=0.0, seed=3)
    raw = to_tensor(gradient_image(), (64, 32))
    out = t.augment(raw)
    assert out.shape == raw.shape
    # red increases left to right in the source; after a flip it decreases wherever the crop kept image
    interior = out[0, 20:40, 12:20]
    assert (interior[:, 1:] <= interior[:, :-1] + 1e-6).all()
    # with a pad of 10 and random offsets some outputs show padding (zeros) at a border
    outs = [t.augment(raw) for _ in range(20)]
    assert any((o[:, :, 0] == 0).all() or (o[:, 0, :] == 0).all() for o in outs)


def test_random_erasing_fills_a_rectangle_with_the_mean():
    g = torch.Generator().manual_seed(0)
    x = normalize(torch.rand(3, 64, 32))
    erased = random_erase(x, g, p=1.0)
    changed = (erased != x).any(0)
    assert changed.any()
    rows, cols = changed.nonzero(as_tuple=True)
    box = erased[:, rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    assert torch.allclose(box, torch.tensor(CLIP_MEAN).view(3, 1, 1).expand_as(box))
    assert 0.02 * 64 * 32 * 0.5 <= changed.sum() <= 0.4 * 64 * 32 * 1.5
    assert torch.equal(random_erase(x, g, p=0.0), x)


def test_training_transform_is_repeatable_for_a_seed():
    image = gradient_image()
    t1, t2 = ImageTransform((64, 32), train=True, seed=1), ImageTransform((64, 32), train=True, seed=1)
    assert all(torch.equal(t1(image), t2(image)) for _ in range(5))
    t3 = ImageTransform((64, 32), train=True, seed=2)
    assert any(not torch.equal(t1(image), t3(image)) for _ in range(5))


def test_workers_get_different_augmentations():
    class Images(torch.utils.data.Dataset):
        def __init__(self):
            self.t = ImageTransform((64, 32), train=True, seed=0)

        def __len__(self):
            return 4

        def __getitem__(self, i):
            return self.t(gradient_image())

    torch.manual_seed(0)
    batches = list(torch.utils.data.DataLoader(Images(), batch_size=1, num_workers=2))
    assert not torch.equal(batches[0], batches[1]), "worker 0 and worker 1 must not replay the same augmentation"
