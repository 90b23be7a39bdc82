"""How close generated faces are to real ones, offline and on a CPU: the sliced Wasserstein distance (SWD)
between their Laplacian pyramids' 7x7 patches, as ProGAN measures faces (Karras et al., 2018, appendix D).

Why this measure: it needs no downloaded weights (the FID needs InceptionV3's) and no network of our own to
train and trust; it compares the two sets' distributions of local detail at each scale, so it sees blur,
noise, wrong colours and a lack of variety (tools/check_face_measure.py shows it ordering those as a person
would); and it is quick (10,000 64x64 faces in well under a minute on two cores).

How: each image's Laplacian pyramid (the detail at 64, 32, ... down to a 16x16 low-pass image); from each level,
`patches` 7x7x3 patches per image, at the same positions in both sets; each level's patches normalised by the
real set's mean and spread per colour channel; then the distance between the two sets of patches along
`directions` random unit directions (each the 1-D Wasserstein distance of the sorted projections), averaged,
times 1,000. 0 for identical sets; lower is closer. Like the FID, it depends on how many images are compared:
compare figures of the same count only.
"""

import numpy as np
import tensorflow as tf

PATCH = 7  # ProGAN's patch size
SMALLEST_LEVEL = 16  # the pyramid stops at this size: its last level is the low-pass image
_BINOMIAL = np.outer(*[np.array([1, 4, 6, 4, 1], np.float32) / 16] * 2)  # ProGAN's 5x5 Gaussian


def _blur(images):
    """The 5x5 binomial blur of [N, H, W, 3] images, edges reflected."""
    kernel = tf.constant(np.tile(_BINOMIAL[:, :, None, None], (1, 1, 3, 1)))
    padded = tf.pad(images, [[0, 0], [2, 2], [2, 2], [0, 0]], mode="REFLECT")
    return tf.nn.depthwise_conv2d(padded, kernel, [1, 1, 1, 1], "VALID")


def laplacian_pyramid(images):
    """The Laplacian pyramid of [N, S, S, 3] float images: levels of S, S/2, ... down to 16, the last low-pass."""
    levels, current = [], tf.convert_to_tensor(images, tf.float32)
    while current.shape[1] > SMALLEST_LEVEL:
        smaller = _blur(current)[:, ::2, ::2]
        levels.append(current - tf.image.resize(smaller, current.shape[1:3], method="bilinear"))
        current = smaller
    return levels + [current]


def _check_faces(images, name):
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.shape[1] != images.shape[2] or images.shape[1] < 16:
        raise ValueError(f"{name}: expected colour images [N, size, size, 3] of size 16 or more, "
                         f"got an array of shape {images.shape}.")
    if images.dtype != np.uint8:  # [-1, 1] floats, the generator's range: rounded to pixels, as saved
        images = np.round((np.clip(images, -1, 1) + 1) * 127.5).astype(np.uint8)
    return images


class FaceQuality:
    """How close faces are to `reference` faces: `FaceQuality(real_faces)(generated_faces)`.

    Both are [N, size, size, 3] images, uint8 or [-1, 1] floats, the same N and size (10,000 to compare
    with the README's figures). The call gives a dict: `swd`, the mean over the pyramid's levels, and
    `levels`, each level's SWD by its size. The patch positions and directions come from `seed`, the
    same for every call, so that figures differ only by the images.
    """

    def __init__(self, reference, patches=32, directions=256, seed=0, batch_size=500):
        reference = _check_faces(reference, "reference")
        self.count, self.size = len(reference), reference.shape[1]
        self.patches, self.batch_size = patches, batch_size
        rng = np.random.default_rng(seed)
        self.sizes = [level.shape[1] for level in laplacian_pyramid(np.zeros((1, *reference.shape[1:]), np.float32))]
        # Each image's patch corners at each level, the same for both sets; the same directions for both too.
        self.corners = [rng.integers(0, size - PATCH + 1, (self.count, patches, 2)) for size in self.sizes]
        directions = rng.standard_normal((PATCH * PATCH * 3, directions)).astype(np.float32)
        self.directions = directions / np.linalg.norm(directions, axis=0)
        levels = self._patches(reference)
        self.mean = [level.mean((0, 1, 2)) for level in levels]  # per colour channel
        self.std = [level.std((0, 1, 2)) for level in levels]
        self.reference = [np.sort(projections, axis=0) for projections in self._projections(levels)]

    def _patches(self, images):
        """Each pyramid level's patches of images: [N * patches, 7, 7, 3] float32 per level."""
        rows = np.arange(PATCH)
        levels = [[] for _ in self.sizes]
        for start in range(0, len(images), self.batch_size):
            batch = tf.cast(images[start:start + self.batch_size], tf.float32) / 255.0
            for level, corners, patches in zip(laplacian_pyramid(batch), self.corners, levels):
                corners = corners[start:start + self.batch_size]
                n = np.arange(len(corners))[:, None, None, None]
                y = (corners[..., 0][:, :, None, None] + rows[None, None, :, None])
                x = (corners[..., 1][:, :, None, None] + rows[None, None, None, :])
                patches.append(level.numpy()[n, y, x].reshape(-1, PATCH, PATCH, 3))
        return [np.concatenate(patches) for patches in levels]

    def _projections(self, levels):
        """Each level's patches, normalised by the reference's statistics, projected on the directions."""
        return [((patches - mean) / std).reshape(len(patches), -1) @ self.directions
                for patches, mean, std in zip(levels, self.mean, self.std)]

    def __call__(self, images):
        images = _check_faces(images, "images")
        if images.shape[:2] != (self.count, self.size):
            raise ValueError(f"images: expected {self.count:,} faces of {self.size}x{self.size}, as many as the "
                             f"reference and the same size, got {len(images):,} of "
                             f"{images.shape[1]}x{images.shape[2]}.")
        levels = {}
        for size, projections, reference in zip(self.sizes, self._projections(self._patches(images)), self.reference):
            levels[size] = float(np.abs(np.sort(projections, axis=0) - reference).mean() * 1000)
        return {"swd": float(np.mean(list(levels.values()))), "levels": levels}


def describe_face_quality(quality, count):
    """One line for a `FaceQuality` result."""
    levels = ", ".join(f"{size}x{size}: {swd:.1f}" for size, swd in quality["levels"].items())
    return f"SWD {quality['swd']:.1f} over {count:,} faces (by level: {levels}); lower is closer, 0 for the same faces"
