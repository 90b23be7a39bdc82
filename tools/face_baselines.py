"""Two published DCGAN recipes for faces, re-expressed in Keras 3 from their descriptions and ready to train from
scratch at 32x32 or 64x64: the baselines that `bench_faces.py` trains next to the notebook's face recipe.
Not a command."""

import keras
import numpy as np
import tensorflow as tf

from tools.baselines import Baseline, pytorch_batch_norm, pytorch_dcgan_step
from tools.training_speed import forward_flops, training_flops


def pytorch_dcgan(size=64):
    """The DCGAN paper's recipe as PyTorch's DCGAN tutorial trains CelebA (pytorch.org/tutorials, dcgan_faces).

    z: 100 normal values; G: a 4x4 transposed convolution from z to 512 maps (at 64x64), then stride-2 4x4
    transposed convolutions halving the maps, batch norm and ReLU, tanh at 64x64; D its mirror, LeakyReLU 0.2,
    batch norm but on the first layer, a 4x4 valid convolution to the logit. Weights from N(0, 0.02), no biases.
    Batch 128, Adam 2e-4, beta1 0.5 for both. At 32x32 each network loses its widest layer. 3 G + 8 D FLOPs.
    It draws as the tutorial does, its generator never set to eval(): in training mode, each batch of 64
    normalized by its own statistics.
    """
    layers = keras.layers
    convolution = dict(use_bias=False, kernel_initializer=keras.initializers.RandomNormal(stddev=0.02))
    depths = [64 * 2**i for i in range({32: 3, 64: 4}[size])]  # next to the image first: 64, 128, 256, 512
    generator = keras.Sequential([keras.Input((100,)), layers.Reshape((1, 1, 100)),
                                  layers.Conv2DTranspose(depths[-1], 4, **convolution)], name="pytorch_generator")
    for depth in reversed(depths[:-1]):  # 4x4 -> size/2
        generator.add(pytorch_batch_norm())
        generator.add(layers.ReLU())
        generator.add(layers.Conv2DTranspose(depth, 4, 2, "same", **convolution))
    generator.add(pytorch_batch_norm())
    generator.add(layers.ReLU())
    generator.add(layers.Conv2DTranspose(3, 4, 2, "same", activation="tanh", **convolution))
    discriminator = keras.Sequential([keras.Input((size, size, 3))], name="pytorch_discriminator")
    for i, depth in enumerate(depths):  # size -> 4x4
        discriminator.add(layers.Conv2D(depth, 4, 2, "same", **convolution))
        if i:
            discriminator.add(pytorch_batch_norm())
        discriminator.add(layers.LeakyReLU(0.2))
    discriminator.add(layers.Conv2D(1, 4, **convolution))  # 4x4 -> the logit
    discriminator.add(layers.Flatten())
    flops = training_flops(discriminator, generator) + forward_flops(discriminator)
    in_training_mode = tf.function(lambda z: generator(z, training=True))

    def draw(z):
        return np.concatenate([in_training_mode(z[i:i + 64]).numpy() for i in range(0, len(z), 64)])

    train_step, optimizers = pytorch_dcgan_step(generator, discriminator)
    return Baseline(generator, discriminator, train_step, 128, flops, draw=draw, state=optimizers)


def keras_dcgan(size=64):
    """Keras's DCGAN-on-CelebA example (keras.io/examples/generative/dcgan_overriding_train_step).

    z: 128 normal values; G: dense to 8x8x128 maps, three 4x4 stride-2 transposed convolutions (128, 256, 512
    maps) with LeakyReLU 0.2 and no batch norm, a 5x5 convolution to a sigmoid image; D: three 4x4 stride-2
    convolutions (64, 128, 128), LeakyReLU 0.2, dropout 0.2, a sigmoid unit. Images in [0, 1]: here a
    rescaling at D's input and G's output keeps the project's [-1, 1] outside, the same arithmetic inside.
    Batch 32, Adam 1e-4 for both; D trains on fakes labelled 1 and reals labelled 0, labels plus up to 0.05 of
    uniform noise; then G, on a new z, to have its images called real. At 32x32, G starts from 4x4. 4 G + 8 D FLOPs.
    """
    layers = keras.layers
    start = size // 8
    generator = keras.Sequential([
        keras.Input((128,)), layers.Dense(start * start * 128), layers.Reshape((start, start, 128)),
        layers.Conv2DTranspose(128, 4, 2, "same"), layers.LeakyReLU(0.2),
        layers.Conv2DTranspose(256, 4, 2, "same"), layers.LeakyReLU(0.2),
        layers.Conv2DTranspose(512, 4, 2, "same"), layers.LeakyReLU(0.2),
        layers.Conv2D(3, 5, padding="same", activation="sigmoid"),
        layers.Rescaling(2.0, offset=-1.0),  # [0, 1] -> [-1, 1]
    ], name="keras_generator")
    discriminator = keras.Sequential([
        keras.Input((size, size, 3)), layers.Rescaling(0.5, offset=0.5),  # [-1, 1] -> [0, 1]
        layers.Conv2D(64, 4, 2, "same"), layers.LeakyReLU(0.2),
        layers.Conv2D(128, 4, 2, "same"), layers.LeakyReLU(0.2),
        layers.Conv2D(128, 4, 2, "same"), layers.LeakyReLU(0.2),
        layers.Flatten(), layers.Dropout(0.2), layers.Dense(1, activation="sigmoid"),
    ], name="keras_discriminator")
    d_optimizer, g_optimizer = keras.optimizers.Adam(1e-4), keras.optimizers.Adam(1e-4)
    loss = keras.losses.BinaryCrossentropy()

    @tf.function
    def train_step(real_images, z):
        batch = tf.shape(real_images)[0]
        fake_images = generator(z, training=False)
        labels = tf.concat([tf.ones([batch, 1]), tf.zeros([batch, 1])], axis=0)  # as the example: 1 fake, 0 real
        labels += 0.05 * tf.random.uniform(tf.shape(labels))
        with tf.GradientTape() as tape:
            d_loss = loss(labels, discriminator(tf.concat([fake_images, real_images], axis=0), training=True))
        d_optimizer.apply(tape.gradient(d_loss, discriminator.trainable_variables), discriminator.trainable_variables)
        with tf.GradientTape() as tape:
            g_loss = loss(tf.zeros([batch, 1]), discriminator(generator(tf.random.normal(tf.shape(z)), training=True),
                                                              training=True))
        g_optimizer.apply(tape.gradient(g_loss, generator.trainable_variables), generator.trainable_variables)
        return d_loss, g_loss

    flops = training_flops(discriminator, generator) + forward_flops(generator) + forward_flops(discriminator)
    return Baseline(generator, discriminator, train_step, 32, flops, z_dim=128)
