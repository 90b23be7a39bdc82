"""A check for each network function the notebook defines.

Each check builds what it needs, calls the function, and asserts on what it does (values,
shapes, gradients, what changes and what must not), so a wrong design fails here, next to its
definition, rather than as blurry samples an hour later.
"""

import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from IPython.utils.capture import capture_output
from keras import layers

IMAGE_SHAPES = [(28, 28, 1), (32, 32, 3), (64, 64, 3)]
# The networks' width in these checks: narrow, so that each check takes seconds on a CPU, where float16 convolutions
# are slow (a GPU does not care). Whether the width follows `filters` has a check of its own.
WIDTH = 16
FLOAT32_ROUNDING = 2.0**-24  # float32 keeps 24 significant bits: each operation rounds by at most this, relatively


def _passed():
    print("Tests Passed")


def _tiny_networks(image_shape=(8, 8, 1), z_dim=5, batch_norm=False, dtype=None):
    """A small discriminator and generator of known design, to test the functions that use them.

    Built under Keras' current precision policy (`dtype=None`), as the notebook's networks are, with
    float32 logits and images as a correct design has even in mixed precision; or all in `dtype`.
    """
    def norm():
        return [layers.BatchNormalization(dtype=dtype)] if batch_norm else []

    discriminator = keras.Sequential(
        # No bias before LeakyReLU: on CPUs where TensorFlow uses oneDNN, its graph optimizer fails to fuse that
        # pattern's gradient and logs an error line; the networks compute the same either way.
        [keras.Input(image_shape), layers.Conv2D(4, 3, 2, padding="same", use_bias=False, dtype=dtype), *norm(),
         layers.LeakyReLU(0.2, dtype=dtype), layers.Flatten(dtype=dtype), layers.Dense(1, dtype="float32")],
        name="tiny_discriminator",
    )
    generator = keras.Sequential(
        [keras.Input((z_dim,)), layers.Dense(int(np.prod(image_shape)), dtype=dtype), *norm(),
         layers.Reshape(image_shape, dtype=dtype), layers.Activation("tanh", dtype="float32")],
        name="tiny_generator",
    )
    return discriminator, generator


def _reference_losses(discriminator, generator, real_images, z):
    """The DCGAN losses, written out: D tells real (1) from fake (0); G wants its fakes called real."""
    real_logits = discriminator(real_images, training=True)
    fake_logits = discriminator(generator(z, training=True), training=True)
    d_loss = tf.reduce_mean(tf.nn.softplus(-real_logits)) + tf.reduce_mean(tf.nn.softplus(fake_logits))
    g_loss = tf.reduce_mean(tf.nn.softplus(-fake_logits))
    return d_loss, g_loss


def _float32_layer(layer):
    try:
        return layer.__class__.from_config({**layer.get_config(), "dtype": "float32"})
    except (TypeError, ValueError):  # e.g. a Lambda layer's function cannot be rebuilt from its config
        if layer.weights:
            raise
        return layer  # no weights: it can be shared as it is


def _driven(model, inputs, scale=20):
    """The network's outputs for `inputs` with its weights multiplied by `scale`: driven hard.

    Computed on a float32 copy, where nothing overflows; a network that cannot be copied (a subclassed
    model) is driven in place, its weights restored afterwards.
    """
    try:
        copy = keras.models.clone_model(model, clone_function=_float32_layer)
    except (TypeError, ValueError):
        weights = model.get_weights()
        model.set_weights([scale * weight for weight in weights])
        try:
            return tf.cast(model(inputs, training=False), tf.float32)
        finally:
            model.set_weights(weights)
    copy.set_weights([scale * weight for weight in model.get_weights()])
    return copy(inputs, training=False)


def _check_trainable(model, inputs, network, input_name):
    """Every layer trains, and the output's gradient reaches every weight and the input."""
    frozen = [layer.name for layer in model.layers if layer.weights and not layer.trainable]
    assert model.trainable and not frozen, (
        f"The {network}'s layers {frozen or 'all'} are frozen (trainable=False): its optimizer would never train them.")
    assert model.trainable_variables, f"The {network} has no weights to train."
    inputs = tf.convert_to_tensor(inputs)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(inputs)
        outputs = tf.cast(model(inputs, training=True), tf.float32)
        # A random mix of the outputs: unlike their sum, batch norm cannot cancel it.
        projected = tf.reduce_sum(outputs * tf.random.stateless_normal(tf.shape(outputs), seed=[7, 7]))
    gradients = tape.gradient(projected, model.trainable_variables)
    unreached = [variable.path for variable, gradient in zip(model.trainable_variables, gradients) if gradient is None]
    assert not unreached, (f"The {network}'s output does not depend on the weights {unreached}: each layer must be "
                           f"used, with nothing like tf.stop_gradient in between.")
    gradient = tape.gradient(projected, inputs)
    assert gradient is not None and np.any(gradient.numpy() != 0), (
        f"No gradient reaches the {network}'s input ({input_name}) from its output: the "
        + ("generator learns through the discriminator's gradient, so nothing may stop it (tf.stop_gradient, "
           "rounding, casting to integers)." if network == "discriminator" else "images must depend on z smoothly."))


def _check_width(narrow, wide, network):
    assert narrow.count_params() < wide.count_params(), (
        f"The {network}'s width should follow `filters`: filters=8 and filters=16 give {narrow.count_params():,} and "
        f"{wide.count_params():,} weights.")


def test_discriminator(discriminator):
    _check_discriminator(discriminator, IMAGE_SHAPES[0])
    # Before the larger images: a network that ignores `filters` is wide, and slow to run there.
    _check_width(discriminator((28, 28, 1), filters=8), discriminator((28, 28, 1), filters=16), "discriminator")
    for image_shape in IMAGE_SHAPES[1:]:
        _check_discriminator(discriminator, image_shape)
    _passed()


def _check_discriminator(discriminator, image_shape):
    model = discriminator(image_shape, filters=WIDTH)
    images = tf.random.uniform((4, *image_shape), -1, 1, seed=1)
    logits = model(images, training=False)
    assert logits.shape == (4, 1), f"For {image_shape} images the output should be (4, 1), got {logits.shape}."
    last = model.layers[-1].get_config() if model.layers else {}
    assert last.get("activation", "linear") == "linear", \
        f"The discriminator should return logits; its last layer applies {last['activation']!r}."
    assert logits.dtype == tf.float32, (
        f"The logits should be float32, got {logits.dtype}: in mixed precision give the last layer "
        f"dtype=\"float32\".")
    n_variables = len(model.variables)
    # Both the real and the fake pass go through the same weights: calling again must neither create
    # variables nor give other logits. The same weights can differ only by their sums' order (on a GPU), a
    # few of float16's last bits (2**-11 each); other weights give logits of their own: 1 % of their size
    # (2**-7) lies between the two.
    again = model(images, training=False)
    assert len(model.variables) == n_variables, "A second call created new weights: they are not shared."
    scale = float(tf.reduce_max(tf.abs(logits)))
    np.testing.assert_allclose(again, logits, rtol=0, atol=2**-7 * scale,
                               err_msg="Two calls on the same images disagree: the weights are not shared.")
    assert len(np.unique(logits.numpy())) > 1, (
        f"Four different images gave the same logit {float(logits[0, 0]):.4g}: the discriminator must look at "
        f"its input.")
    # Logits are unbounded. Driven hard (its weights scaled up, in float32), a network whose output is logits
    # gives large ones; a sigmoid at the end keeps them in [0, 1], a tanh in [-1, 1].
    driven = _driven(model, images)
    largest = float(tf.reduce_max(tf.abs(driven)))
    assert largest > 2, (f"Driven hard, the outputs stay within [-{largest:.3g}, {largest:.3g}]: they should be "
                         f"logits, unbounded, not squashed by a sigmoid or tanh (the loss applies the sigmoid).")
    _check_trainable(model, images, "discriminator", "the images")


def _full_size_feature_maps(model, image_shape):
    """The layers whose output has the image's height and width and more channels than it."""
    return [layer.name for layer in model.layers
            if tuple(layer.output.shape[1:3]) == image_shape[:2] and layer.output.shape[-1] > image_shape[-1]]


def test_generator(generator):
    # (z_dim, image_shape, full_resolution_layer): every pair of values of any two of them, in 6 cases of the 12
    # combinations, so a mistake that shows with one value of each of two arguments shows here.
    small, medium, large = IMAGE_SHAPES
    cases = [(100, small, False), (7, small, True), (7, medium, False), (100, medium, True), (100, large, False),
             (7, large, True)]
    _check_generator(generator, *cases[0])
    # Before the larger images: a network that ignores `filters` is wide, and slow to run there.
    _check_width(generator(7, (28, 28, 1), filters=8), generator(7, (28, 28, 1), filters=16), "generator")
    for case in cases[1:]:
        _check_generator(generator, *case)
    _passed()


def _check_generator(generator, z_dim, image_shape, full_resolution_layer):
    model = generator(z_dim, image_shape, filters=WIDTH, full_resolution_layer=full_resolution_layer)
    assert model.input_shape == (None, z_dim), f"The input should be (None, {z_dim}), got {model.input_shape}."
    # Huge z drives every unit hard: only a tanh-like output stays in [-1, 1].
    z = 100 * tf.random.normal((4, z_dim), seed=1)
    for training in (False, True):
        images = model(z, training=training)
        assert images.shape == (4, *image_shape), \
            f"For z_dim={z_dim} the output should be {(4, *image_shape)}, got {images.shape}."
        assert images.dtype == tf.float32, f"The images should be float32, got {images.dtype}."
        low, high = float(tf.reduce_min(images)), float(tf.reduce_max(images))
        assert -1 <= low and high <= 1, f"The images should lie in [-1, 1], got [{low:.3g}, {high:.3g}]."
    full_size = _full_size_feature_maps(model, image_shape)
    if full_resolution_layer:
        assert full_size, (f"With full_resolution_layer=True the image should be drawn from feature maps of "
                           f"its own size, {image_shape[:2]}; no layer gives any.")
    else:
        assert not full_size, (f"With full_resolution_layer=False the last layer should draw the image from "
                               f"half-size feature maps, but {full_size} give full-size ones.")
    # Driven hard (its weights scaled up, in float32, where nothing overflows), a generator's images differ from
    # one z to the next by about their range; one that ignores z draws the same image every time, equal up to
    # float32's rounding (2**-24 of their size). 2**-7 lies far between.
    images = _driven(model, tf.random.normal((4, z_dim), seed=1)).numpy()
    spread = float(np.abs(images - images[:1]).max())
    assert spread > 2**-7, f"Four different z gave the same image (largest difference {spread:.2g}): use z."
    # The images can reach both ends of [-1, 1], as real images do: driven hard, a tanh output does; a sigmoid's
    # stays in [0, 1].
    low, high = float(images.min()), float(images.max())
    assert low < -0.9 and high > 0.9, (
        f"Driven hard, the images only reach [{low:.3g}, {high:.3g}]: they should be able to reach both "
        f"-1 and 1, the range of the real images (a tanh output does; a sigmoid's is [0, 1]).")
    _check_trainable(model, z, "generator", "z")


def test_model_loss(model_loss):
    # In float32 whatever the precision policy: this checks the losses' maths, compared at float32's precision.
    discriminator, generator = _tiny_networks(batch_norm=True, dtype="float32")
    real_images = tf.random.uniform((6, 8, 8, 1), -1, 1, seed=2)
    z = tf.random.normal((6, 5), seed=3)
    networks = {"discriminator": discriminator, "generator": generator}
    n_variables = len(discriminator.variables) + len(generator.variables)
    statistics = {v.path: v.numpy() for network in networks.values() for v in network.non_trainable_variables}
    with tf.GradientTape(persistent=True) as tape:
        d_loss, g_loss = model_loss(discriminator, generator, real_images, z)
    assert d_loss.shape == () and g_loss.shape == (), "Each loss should be a scalar (a mean over the batch)."
    assert len(discriminator.variables) + len(generator.variables) == n_variables, "model_loss created weights."
    # Batch norm learns from each batch only when its network is called with training=True.
    for name, network in networks.items():
        unchanged = [v.path for v in network.non_trainable_variables if np.array_equal(v.numpy(), statistics[v.path])]
        assert not unchanged, (f"The {name}'s batch-norm statistics {unchanged} did not change: in model_loss call "
                               f"both networks with training=True.")
    # A fake pass through any discriminator but the given one gives other values. Two correct ways of writing
    # the cross-entropy (softplus, or max(x, 0) - x z + log(1 + exp(-|x|))) round differently: at most about
    # 10 float32 roundings per term, in sums of 6 terms, so within 60 x 2**-24 = 3.6e-6 relative; 1e-5 allows that.
    with tf.GradientTape(persistent=True) as reference_tape:
        expected = _reference_losses(discriminator, generator, real_images, z)
    np.testing.assert_allclose([d_loss, g_loss], expected, rtol=1e-5,
                               err_msg="(d_loss, g_loss) differ from sigmoid cross-entropy with labels "
                                       "real=1, fake=0 for D and fake=1 for G, through one shared discriminator.")
    # ...unless it is a copy with the same weights: then the values agree, but D's loss on the fakes
    # trains the copy, so the gradients differ. The gradients carry the losses' rounding through the
    # networks' sums (at most 64 terms here): within 64 x 60 x 2**-24 = 2.3e-4 relative, or that much of the
    # network's largest gradient for those that cancel to about 0 (a bias before batch norm). A wrong gradient
    # is off by whole terms.
    tolerance = 64 * 60 * FLOAT32_ROUNDING
    for name, loss, expected_loss, network in [("d_loss", d_loss, expected[0], discriminator),
                                               ("g_loss", g_loss, expected[1], generator)]:
        expected_gradients = reference_tape.gradient(expected_loss, network.trainable_variables)
        largest = max(float(np.abs(gradient).max()) for gradient in expected_gradients)
        for variable, gradient, expected_gradient in zip(network.trainable_variables,
                                                         tape.gradient(loss, network.trainable_variables),
                                                         expected_gradients):
            assert gradient is not None and np.allclose(gradient, expected_gradient, rtol=tolerance,
                                                        atol=tolerance * largest), (
                f"The gradient of {name} for {variable.path} is wrong although the value is right: score the "
                f"real and the fake images with the discriminator given, not a copy, and don't stop gradients."
            )
    _passed()


def test_model_opt(model_opt):
    discriminator, generator = _tiny_networks(batch_norm=True)
    real_images = tf.random.uniform((6, 8, 8, 1), -1, 1, seed=4)
    z = tf.random.normal((6, 5), seed=5)
    with tf.GradientTape(persistent=True) as tape:
        d_loss, g_loss = _reference_losses(discriminator, generator, real_images, z)
    directions = {
        "discriminator": (discriminator, tape.gradient(d_loss, discriminator.trainable_variables)),
        "generator": (generator, tape.gradient(g_loss, generator.trainable_variables)),
    }
    before = {id(v): v.numpy() for v in discriminator.variables + generator.variables}
    learning_rate = 0.01

    train_step, d_optimizer, g_optimizer = model_opt(discriminator, generator, learning_rate, 0.5)
    train_step = tf.function(train_step)  # compiled, as train compiles it
    try:
        losses = train_step(real_images, z)
    except (AttributeError, NotImplementedError, TypeError) as error:  # e.g. .numpy() on a symbolic tensor
        raise AssertionError(f"train_step should run compiled by tf.function, as train runs it; it failed: "
                             f"{error}") from error
    assert len(losses) == 2 and all(np.isfinite(loss.numpy()) for loss in losses), \
        "train_step should return finite (d_loss, g_loss)."
    assert d_optimizer is not g_optimizer, "Each network needs its own optimizer."
    if discriminator.dtype_policy.name == "mixed_float16":
        assert all(isinstance(o, keras.optimizers.LossScaleOptimizer) for o in (d_optimizer, g_optimizer)), (
            "In mixed precision, wrap each Adam in keras.optimizers.LossScaleOptimizer: without loss scaling, small "
            "float16 gradients round to zero.")
    iterations = [int(o.iterations) for o in (d_optimizer, g_optimizer)]
    assert iterations == [1, 1], \
        f"One call of train_step should update each optimizer once; their counts: {iterations}."

    # Adam's first step moves each weight by lr g / (|g| + 1e-7): for |g| above 1e-4, the learning rate to within
    # 0.1 %, against its own loss's gradient. A weight also moved by the other optimizer, or not at all, is off by
    # a whole step (0.1 lr tells them apart). In mixed precision the step's float16 gradients and the reference's
    # may disagree in sign where they nearly cancel: at least 90 % of the clear ones must agree.
    for name, (network, gradients) in directions.items():
        for variable, gradient in zip(network.trainable_variables, gradients):
            step = variable.numpy() - before[id(variable)]
            clear = np.abs(gradient.numpy()) > 1e-4
            if not clear.any():  # e.g. a bias that batch norm cancels
                continue
            expected = -learning_rate * np.sign(gradient.numpy())
            on_course = np.isclose(step, expected, rtol=0, atol=0.1 * learning_rate)[clear].mean()
            assert on_course > 0.9, (
                f"Only {on_course:.0%} of {name} weights {variable.path} took one Adam step against the "
                f"{name} loss: each optimizer must update only its own network with its own loss."
            )
    for network in (discriminator, generator):
        for variable in network.non_trainable_variables:
            assert not np.array_equal(variable.numpy(), before[id(variable)]), \
                f"Batch-norm statistic {variable.path} did not change: call the networks with training=True."
    # Each optimizer is the one of its network: with its learning rate at 0, that network stands still.
    for name, optimizer, network in [("d_optimizer", d_optimizer, discriminator),
                                     ("g_optimizer", g_optimizer, generator)]:
        weights = [v.numpy() for v in network.trainable_variables]
        optimizer.learning_rate = 0.0
        train_step(real_images, z)
        optimizer.learning_rate = learning_rate
        moved = [v.path for v, w in zip(network.trainable_variables, weights) if not np.array_equal(v.numpy(), w)]
        assert not moved, (f"With {name}'s learning rate at 0, {moved} still moved: return the optimizers in the "
                           f"order (train_step, d_optimizer, g_optimizer), each updating its own network.")
    _check_adam_steps(model_opt)
    _passed()


def _check_adam_steps(model_opt, steps=3, learning_rate=0.01, beta1=0.3):
    """A few steps of model_opt move the weights as Adam with the given learning rate and beta1 does.

    From the second step on, Adam's moves depend on beta1 (its momentum): a model_opt that ignores
    it (Adam's default is 0.9) drifts away from the reference. In float32, to compare closely.
    """
    networks, reference = _tiny_networks(dtype="float32"), _tiny_networks(dtype="float32")
    for network, copy in zip(networks, reference):
        copy.set_weights(network.get_weights())
    train_step = tf.function(model_opt(*networks, learning_rate, beta1)[0])
    optimizers = [keras.optimizers.Adam(learning_rate, beta_1=beta1) for _ in reference]
    clear = [np.ones(v.shape, bool) for copy in reference for v in copy.trainable_variables]
    for step in range(steps):
        real_images = tf.random.uniform((6, 8, 8, 1), -1, 1, seed=10 + step)
        z = tf.random.normal((6, 5), seed=20 + step)
        losses = train_step(real_images, z)
        with tf.GradientTape(persistent=True) as tape:
            expected = _reference_losses(*reference, real_images, z)
        if step == 0:  # the losses of the weights the step starts from (as test_model_loss compares them)
            np.testing.assert_allclose(losses, expected, rtol=1e-5, err_msg=(
                "train_step should return (d_loss, g_loss), the losses of the weights it started from."))
        gradients = [tape.gradient(loss, network.trainable_variables) for loss, network in zip(expected, reference)]
        clear = [mask & (np.abs(g.numpy()) > 1e-4) for mask, g in zip(clear, sum(gradients, []))]
        for gradient, network, optimizer in zip(gradients, reference, optimizers):
            optimizer.apply_gradients(zip(gradient, network.trainable_variables))
    # Adam divides each gradient by its root mean square: where that stays above 1e-4, a gradient's rounding r
    # moves a weight by at most 2 lr r / 1e-4 per step. Two correct ways to these gradients differ by a few
    # float32 roundings of their terms' total size (below 1 here): r < 4 x 2**-24 = 2.4e-7, so 3 steps stay
    # within 3 x 2 x 2.4e-7 / 1e-4 lr = 0.014 lr, while another beta1 or learning rate moves them by about lr.
    # (Near-zero gradients, which Adam magnifies up to lr / 1e-7 times, are left out.)
    variables = [(v, e) for network, copy in zip(networks, reference)
                 for v, e in zip(network.trainable_variables, copy.trainable_variables)]
    for (variable, expected), mask in zip(variables, clear):
        assert np.allclose(variable.numpy()[mask], expected.numpy()[mask], rtol=0, atol=0.03 * learning_rate), (
            f"After {steps} steps, {variable.path} is not where Adam(learning_rate={learning_rate}, "
            f"beta_1={beta1}) puts it: give each Adam the learning rate and beta1 that model_opt receives.")


def test_update_average(update_average):
    generator, average = (_tiny_networks(batch_norm=True, dtype="float32")[1] for _ in range(2))
    rng = np.random.default_rng(0)
    for network in (generator, average):  # batch norm's statistics too: they are averaged like the weights
        network.set_weights([rng.standard_normal(w.shape).astype("float32") for w in network.weights])
    trained, before = [w.numpy() for w in generator.weights], [w.numpy() for w in average.weights]
    # A few float32 roundings of values below 5 in size (|N(0, 1)| draws of this many weights).
    atol = 8 * FLOAT32_ROUNDING * 5

    def update(average, model, ema, steps):  # compiled, as train runs it
        try:
            tf.function(update_average)(average, model, ema, steps)
        except (AttributeError, NotImplementedError, TypeError) as error:
            raise AssertionError(f"update_average with ema={ema!r} failed when compiled by tf.function, as train "
                                 f"runs it: {error}") from error

    update(average, generator, 0.9, tf.Variable(10**6, dtype=tf.int64))  # long after the first steps
    for variable, weight in zip(generator.weights, trained):
        assert np.array_equal(variable.numpy(), weight), \
            f"update_average changed the trained generator's {variable.path}: only the average should move."
    for variable, mean, weight in zip(average.weights, before, trained):
        assert np.allclose(variable.numpy(), 0.9 * mean + 0.1 * weight, rtol=0, atol=atol), (
            f"With ema=0.9, each of the average's weights should move 10 % of the way to the generator's "
            f"(batch norm's statistics included); {variable.path} did not.")
    update(average, generator, 0, tf.Variable(10**6, dtype=tf.int64))  # a whole 0, as `-p celeba_ema 0` passes it
    for variable, weight in zip(average.weights, trained):
        assert np.allclose(variable.numpy(), weight, rtol=0, atol=atol), \
            f"With ema=0, the average should become the generator itself; its {variable.path} did not."
    _passed()


def test_measure_statistics(measure_statistics):
    f32 = dict(dtype="float32")
    first, second = layers.BatchNormalization(momentum=0.9, **f32), layers.BatchNormalization(momentum=0.8, **f32)
    model = keras.Sequential([keras.Input((5,)), layers.Dense(6, **f32), first, layers.ReLU(**f32),
                              layers.Dense(6, **f32), second, layers.Activation("tanh", **f32)], name="tiny_generator")
    for norm in (first, second):  # statistics far from any batch's, as a generator's can be
        norm.moving_mean.assign(np.full(6, 3.0)), norm.moving_variance.assign(np.full(6, 9.0))
    z = tf.random.normal((64, 5), seed=4)
    trained = [w.numpy() for w in model.trainable_weights]
    measure_statistics(model, z)
    measured = [(norm.moving_mean.numpy(), norm.moving_variance.numpy()) for norm in (first, second)]
    assert (first.momentum, second.momentum) == (0.9, 0.8), \
        f"measure_statistics should leave each layer's momentum as it was, (0.9, 0.8), not " \
        f"{first.momentum, second.momentum}."
    for variable, weight in zip(model.trainable_weights, trained):
        assert np.array_equal(variable.numpy(), weight), f"measure_statistics changed the weight {variable.path}."
    # Each layer's inputs for z, as the model computes them in training mode (batch statistics all the way).
    inputs = [model.layers[0](z)]
    inputs.append(model.layers[3](model.layers[2](first(inputs[0], training=True))))
    for i, ((mean, variance), x) in enumerate(zip(measured, inputs)):
        x = x.numpy().astype(np.float64)
        # A float32 mean of 64 values is off by at most 64 roundings of the largest (sums round as they grow).
        for name, value, expected, scale in [("mean", mean, x.mean(0), np.abs(x).max()),
                                             ("variance", variance, x.var(0), ((x - x.mean(0)) ** 2).max())]:
            assert np.allclose(value, expected, rtol=0, atol=64 * FLOAT32_ROUNDING * scale), (
                f"Batch norm layer {i + 1}'s moving {name} should be its inputs' {name} over z, "
                f"{np.round(expected, 4)}; it is {np.round(value, 4)}.")
    _passed()


def test_learning_rate_schedule(learning_rate_schedule):
    # (cooldown, total_steps): the steps to look at, and the rate there as a share of the learning rate. The cooldown
    # falls along half a cosine: 0.9045 a fifth of the way in, 0.5 halfway, 0 at the end, and stays there.
    cases = {(0.0, 100): ([0, 50, 100, 1000], [1, 1, 1, 1]),
             (0.25, 200): ([0, 100, 150, 160, 175, 200, 400], [1, 1, 1, 0.9045085, 0.5, 0, 0]),
             (1.0, 8): ([0, 2, 4, 8], [1, 0.8535534, 0.5, 0])}
    learning_rate = 1e-3
    for (cooldown, total_steps), (steps, shares) in cases.items():
        schedule = learning_rate_schedule(learning_rate, total_steps, cooldown)
        if isinstance(schedule, (int, float)):
            rates = [float(schedule)] * len(steps)
        else:
            assert isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule), (
                f"learning_rate_schedule should return a number or a keras.optimizers.schedules.LearningRateSchedule "
                f"(Adam calls it with its step count, in its compiled step); it returned {type(schedule).__name__}.")
            compiled = tf.function(schedule)  # as Adam evaluates it, in the training step's graph
            try:
                rates = [float(compiled(tf.constant(step, tf.int64))) for step in steps]
            except (TypeError, ValueError, tf.errors.OperatorNotAllowedInGraphError) as error:
                raise AssertionError(f"The schedule failed when compiled by tf.function, as Adam runs it: "
                                     f"{error}") from error
        expected = [learning_rate * share for share in shares]
        assert np.allclose(rates, expected, rtol=1e-5, atol=1e-9), (
            f"With cooldown={cooldown} over {total_steps} steps, the rates at steps {steps} should be "
            f"{np.round(expected, 7).tolist()}; they are {np.round(rates, 7).tolist()}.")
    _passed()


def _logged_learning_rates(log_dir):
    """The learning rates in a run's TensorBoard log, by optimizer: {name: [rate at each checkpoint, ...]}."""
    rates = {}
    for path in sorted(Path(log_dir).glob("events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(str(path)):  # summary_iterator would log a deprecation warning
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                if value.tag.startswith("learning_rate/"):
                    name = value.tag.partition("/")[2]
                    rates.setdefault(name, []).append((event.step, float(tf.make_ndarray(value.tensor))))
    return {name: [rate for _, rate in sorted(steps)] for name, steps in rates.items()}


def _assert_statistics_measured(generator, z_dim):
    """Do `generator`'s batch norm statistics fit its weights? Each layer's moving mean and variance, against
    its inputs' over 2,000 new z: a few hundred z measure them within a few percent of the spread (5 % is one
    standard error at 400), where statistics kept in training, after a few steps, are off by far more."""
    probe = keras.models.clone_model(generator)
    probe.set_weights(generator.get_weights())
    x = tf.random.normal((2000, z_dim), seed=5)
    for layer in probe.layers:
        if isinstance(layer, layers.BatchNormalization):
            mean, variance = (m.numpy() for m in tf.nn.moments(tf.cast(x, tf.float32), axes=range(len(x.shape) - 1)))
            moving_mean, moving_variance = layer.moving_mean.numpy(), layer.moving_variance.numpy()
            assert np.all(abs(moving_mean - mean) <= 0.5 * np.sqrt(variance)) and np.all(
                abs(moving_variance - variance) <= 0.5 * variance), (
                f"The generator train returns draws with batch norm statistics that do not fit its weights: "
                f"{layer.name}'s moving variance is {np.round(moving_variance[:4], 4)}..., its inputs' "
                f"{np.round(variance[:4], 4)}...; measure them (measure_statistics) before drawing.")
        x = layer(x, training=True)


def test_train(train):
    images = tf.random.uniform((32, 28, 28, 1), -1, 1, seed=6)
    dataset = tf.data.Dataset.from_tensor_slices(images).batch(16)
    # stderr not captured: train's progress lines go to the terminal, as they do outside this check.
    with tempfile.TemporaryDirectory() as tmp, capture_output(stderr=False) as shown:
        kwargs = dict(dataset=dataset, data_name="test", epochs=2, z_dim=8, learning_rate=2e-4, beta1=0.5,
                      run_dir=Path(tmp, "run"), images_dir=Path(tmp, "images"), sample_every=2, seed=0,
                      filters=WIDTH)
        generator, losses = train(**kwargs)
        assert generator.output_shape == (None, 28, 28, 1), f"The generator makes {generator.output_shape} images."
        assert np.shape(losses) == (4, 2) and np.isfinite(losses).all(), \
            f"2 epochs of 2 batches should give 4 finite (d_loss, g_loss) rows, got shape {np.shape(losses)}."
        # One optimizer step per training step. (A LossScaleOptimizer also counts its inner optimizer's
        # steps, which skip the steps whose float16 gradients overflowed: at most 4 there.)
        saved = tf.train.load_checkpoint(tf.train.latest_checkpoint(Path(tmp, "run", "checkpoints")))
        counts = {}
        for name in saved.get_variable_to_shape_map():
            if name.endswith("iterations/.ATTRIBUTES/VARIABLE_VALUE"):
                optimizer = name.split("/")[0]
                counts[optimizer] = max(counts.get(optimizer, 0), int(saved.get_tensor(name)))
        mixed = keras.config.dtype_policy().name == "mixed_float16"
        assert sorted(counts) == ["d_optimizer", "g_optimizer"] and all(
            1 <= count <= 4 if mixed else count == 4 for count in counts.values()), \
            f"After 4 steps each optimizer should have taken 4; the checkpoint says {counts}."
        # At ema=0 (the default) the generator returned is the trained one, as the last checkpoint holds it
        # (but for batch norm's statistics, measured below).
        trained = keras.models.clone_model(generator)
        tf.train.Checkpoint(generator=trained).restore(
            tf.train.latest_checkpoint(Path(tmp, "run", "checkpoints"))).expect_partial()
        for a, b in zip(trained.trainable_weights, generator.trainable_weights):
            assert np.array_equal(a.numpy(), b.numpy()), \
                f"With ema=0, train should return the trained generator; its {b.path} is not the trained one's."
        _assert_statistics_measured(generator, z_dim=8)
        pictures = sorted(p.name for p in Path(tmp, "images").glob("*"))  # none if the folder was never made
        assert pictures == ["run_losses.png", "run_samples.jpg"], f"Saved pictures: {pictures}."
        # The learning rates each checkpoint logs for TensorBoard: held without a cooldown; with cooldown=1, falling
        # to 0 at the last step. (In mixed precision the steps whose float16 gradients overflowed do not count, so
        # they fall less far.)
        held = _logged_learning_rates(Path(tmp, "run", "logs"))
        assert sorted(held) == ["d_optimizer", "g_optimizer"] and np.allclose(
            sum(held.values(), []), 2e-4, rtol=1e-5), \
            f"Without a cooldown the learning rates should stay at 2e-4; the log shows {held}."
        cooled = dict(kwargs, run_dir=Path(tmp, "cooldown"), cooldown=1.0)
        generator, losses = train(**cooled)
        # Running it again resumes from the finished checkpoint, its schedule included, instead of starting over.
        resumed, resumed_losses = train(**cooled)
        resume = "Running train again should resume from its last checkpoint, not start over: "
        np.testing.assert_array_equal(resumed_losses, losses, err_msg=resume + "the losses differ.")
        for a, b in zip(resumed.weights, generator.weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=resume + f"generator weight {b.path} differs.")
        last = {name: rates[-1] for name, rates in _logged_learning_rates(Path(tmp, "cooldown", "logs")).items()}
        assert last and all(rate < (0.9 if mixed else 1e-5) * 2e-4 for rate in last.values()), (
            f"With cooldown=1 the learning rates should fall to 0 by the last step; the log shows {last}: pass "
            f"learning_rate_schedule(learning_rate, the run's steps, cooldown) to model_opt.")
    n_figures = sum(bool({"image/png", "image/jpeg"} & set(output.data)) for output in shown.outputs)
    assert n_figures >= 3, f"Training should show sample grids and a loss curve inline; it showed {n_figures}."
    _passed()
