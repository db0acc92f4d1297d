import torch

from au import get_codebook, render_au_maps
from bench.data.transforms import IMAGENET_MEAN, IMAGENET_STD, augment, to_input

CB = get_codebook("paper")


def _dots(landmarks, size=64):
    """A black image with a white 1-px dot at each landmark (rounded)."""
    img = torch.zeros(1, size, size, 3, dtype=torch.uint8)
    for x, y in landmarks.round().long().tolist():
        img[0, y, x] = 255
    return img


def _unnormalise(x):
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return x * std + mean


def test_landmarks_follow_the_image_under_random_augmentation(template_landmarks):
    points = (36, 45, 48, 54, 8, 19, 24)                     # mirror pairs, so flips map dots to dots
    full = template_landmarks.clone()
    img = _dots(full[list(points)])
    for seed in range(6):
        g = torch.Generator().manual_seed(seed)
        x, out = augment(img, full[None], g, flip=0.5, rotation=10, crop_scale=0.7, jitter=0.0)
        bright = _unnormalise(x)[0].mean(0)
        for i in points:
            px, py = out[0, i].round().long().tolist()
            if not (1 <= px <= 62 and 1 <= py <= 62):
                continue                                        # cropped out of the frame
            patch = bright[max(py - 1, 0):py + 2, max(px - 1, 0):px + 2]
            assert patch.max() > 0.15, (seed, i)


def test_flip_augmentation_mirrors_the_au_map(template_landmarks):
    torch.manual_seed(0)
    lm = (template_landmarks + torch.randn(68, 2) * 0.5)[None].repeat(6, 1, 1)
    labels = torch.arange(1, 7)
    img = torch.zeros(6, 64, 64, 3, dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    _, flipped = augment(img, lm, g, flip=1.0, rotation=0.0, crop_scale=1.0, jitter=0.0)
    maps, _ = render_au_maps(lm, labels, (64, 64), (32, 32), CB)
    maps_f, _ = render_au_maps(flipped, labels, (64, 64), (32, 32), CB)
    torch.testing.assert_close(maps_f, maps.flip(-1), atol=1e-4, rtol=0)


def test_identity_augmentation_keeps_image_and_landmarks(template_landmarks):
    img = torch.randint(0, 255, (2, 16, 16, 3), dtype=torch.uint8)
    lm = template_landmarks[None].repeat(2, 1, 1) / 4
    g = torch.Generator().manual_seed(0)
    x, out = augment(img, lm, g, flip=0.0, rotation=0.0, crop_scale=1.0, jitter=0.0)
    torch.testing.assert_close(x, to_input(img), atol=1e-4, rtol=0)
    torch.testing.assert_close(out, lm, atol=1e-4, rtol=0)


def test_place_gives_what_evaluate_takes_and_keeps_in_memory_arrays_in_place():
    import numpy as np

    from bench.data.placement import place
    from bench.data.synthetic import Arrays

    arrays = Arrays(np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3), np.array([3, 5]),
                    np.zeros((2, 68, 2), np.float32))
    split, labels, landmarks = place(arrays, torch.device("cpu"))
    assert split.placement == "memory" and labels.tolist() == [3, 5] and landmarks.shape == (2, 68, 2)
    images, got_labels, _ = split.take([1, 1, 0])
    assert got_labels.tolist() == [5, 5, 3] and torch.equal(images[2], torch.from_numpy(arrays.images[0]))
    assert split.images.data_ptr() == torch.from_numpy(arrays.images).data_ptr()   # no copy on the CPU
