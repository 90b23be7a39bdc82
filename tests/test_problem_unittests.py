"""The checks in problem_unittests.py must pass on the notebook's functions and fail on broken ones.

Each broken variant below takes the notebook's namespace first (bound with functools.partial), so
it can start from the correct function and break one thing about it.
"""

import functools
import os
import sys
import types

import keras
import matplotlib
from matplotlib import pyplot
import numpy as np
import pytest
import tensorflow as tf
from IPython.core.interactiveshell import InteractiveShell
from keras import layers
from traitlets.config import Config

import helper
import problem_unittests as tests
from support.notebook import notebook_functions

pytestmark = pytest.mark.numerics  # the checks compare values within float32 and float16 tolerances



@pytest.fixture(scope="module")
def notebook():
    return notebook_functions()


class HeadlessShell(InteractiveShell):
    def enable_gui(self, gui=None):
        """Inline figures need no GUI event loop (the base class refuses to choose one)."""


@pytest.fixture(scope="module")
def inline_figures():
    """An IPython shell with inline figures, as in the notebook: test_train counts the figures train shows."""
    saved = sys.modules["__main__"], sys.displayhook, sys.excepthook, matplotlib.get_backend()
    config = Config()
    config.HistoryManager.enabled = False
    shell = HeadlessShell.instance(config=config)
    shell.enable_matplotlib("inline")
    yield shell
    HeadlessShell.clear_instance()
    sys.modules["__main__"], sys.displayhook, sys.excepthook, backend = saved
    pyplot.switch_backend(backend)
    matplotlib.interactive(False)


def run_check(name, function):
    getattr(tests, f"test_{name}")(function)


POLICIES = ("float32", "mixed_float16")  # the precision policies the notebook can choose


@pytest.fixture(params=POLICIES)
def policy(request):
    """The precision policy a check runs under (a broken variant under each of the policies `broken` gives it): the
    networks are built under it."""
    keras.config.set_dtype_policy(request.param)
    yield request.param
    keras.config.set_dtype_policy("float32")


# Each check passes on the notebook's own functions where the notebook runs them: in float32 in nbval's run of it
# (conftest.py asks for float32; a failed check fails its cell, and each check cell's "Tests Passed" is compared), in
# mixed precision in test_gpu_configs.py's papermill runs. CI's second CPU configuration (.ci/run flips
# TF_ENABLE_ONEDNN_OPTS) runs the notebook in float32 but no papermill configuration, so there they pass here in mixed
# precision.
if "TF_ENABLE_ONEDNN_OPTS" in os.environ:
    @pytest.mark.parametrize("policy", ["mixed_float16"], indirect=True)
    @pytest.mark.parametrize("name", ["discriminator", "generator", "model_loss", "model_opt", "update_average",
                                      "measure_statistics", "learning_rate_schedule", "train"])
    def test_check_passes_on_the_notebook(notebook, inline_figures, capsys, policy, name):
        run_check(name, notebook[name])
        assert capsys.readouterr().out == "Tests Passed\n"


# --- Tools to break a correct function in one place ------------------------------------------------


def with_globals(function, **replacements):
    """A copy of a notebook function that sees other globals, e.g. model_opt with another model_loss."""
    return types.FunctionType(function.__code__, {**function.__globals__, **replacements}, function.__name__,
                              function.__defaults__, function.__closure__)


def with_last_layers(model, *new_layers, drop=1):
    """The same network (same layers, same weights) with its last `drop` layers replaced by `new_layers`."""
    return keras.Sequential([keras.Input(model.input_shape[1:]), *model.layers[: len(model.layers) - drop],
                             *new_layers])


def helper_with(**replacements):
    """The helper module with some of its functions replaced, for train to use."""
    return types.SimpleNamespace(**{**vars(helper), **replacements})


# --- discriminator ---------------------------------------------------------------------------------


def discriminator_with_two_logits(notebook, image_shape, filters=64):
    return with_last_layers(notebook["discriminator"](image_shape, filters), layers.Dense(2))


def discriminator_with_a_map_of_logits(notebook, image_shape, filters=64):
    """A PatchGAN-like map of logits, (batch, h, w, 1), instead of one per image."""
    return with_last_layers(notebook["discriminator"](image_shape, filters), layers.Conv2D(1, 3, padding="same"),
                            drop=2)


def discriminator_with_sigmoid_dense(notebook, image_shape, filters=64):
    return with_last_layers(notebook["discriminator"](image_shape, filters), layers.Dense(1, activation="sigmoid"))


def discriminator_with_sigmoid_layer(notebook, image_shape, filters=64):
    return with_last_layers(notebook["discriminator"](image_shape, filters), layers.Activation("sigmoid"), drop=0)


class DiscriminatorBuiltInCall(keras.Model):
    """The classic subclassing mistake: call() creates its layers, so every call has fresh weights."""

    def __init__(self, image_shape, new_discriminator):
        super().__init__()
        self.image_shape, self.new_discriminator = image_shape, new_discriminator

    def call(self, images, training=False):
        return self.new_discriminator(self.image_shape)(images, training=training)


class NewDiscriminatorEveryCall:
    """A model-like callable that builds, keeps and calls a new discriminator on every call."""

    def __init__(self, build):
        self.build = build
        self.networks = [build()]

    @property
    def variables(self):
        return [variable for network in self.networks for variable in network.variables]

    @property
    def layers(self):
        return self.networks[-1].layers

    def __call__(self, images, training=False):
        self.networks.append(self.build())
        return self.networks[-1](images, training=training)


def with_first_layers(model, *new_layers):
    """The same network (same layers, same weights) with `new_layers` put before its first layer."""
    return keras.Sequential([keras.Input(model.input_shape[1:]), *new_layers, *model.layers])


def with_gradient_stopped_after(model, position):
    """The same network with tf.stop_gradient after its layer at `position`: the layers before it learn nothing."""
    return keras.Sequential([keras.Input(model.input_shape[1:]), *model.layers[: position + 1],
                             layers.Lambda(keras.ops.stop_gradient), *model.layers[position + 1 :]])


def frozen_first_layer(model):
    model.layers[0].trainable = False
    return model


def discriminator_ignoring_its_input(notebook, image_shape, filters=64):
    """Multiplies the images by 0 before looking at them: every image gets the same logit."""
    return with_first_layers(notebook["discriminator"](image_shape, filters), layers.Rescaling(0.0))


def discriminator_stopping_the_gradient_to_the_images(notebook, image_shape, filters=64):
    """The generator learns through D's gradient with respect to the images: here none gets through."""
    return with_first_layers(notebook["discriminator"](image_shape, filters), layers.Lambda(keras.ops.stop_gradient))


def discriminator_stopping_the_gradient_inside(notebook, image_shape, filters=64):
    return with_gradient_stopped_after(notebook["discriminator"](image_shape, filters), 0)


def discriminator_with_a_frozen_layer(notebook, image_shape, filters=64):
    return frozen_first_layer(notebook["discriminator"](image_shape, filters))


def discriminator_ignoring_filters(notebook, image_shape, filters=64):
    return notebook["discriminator"](image_shape)


def discriminator_squashed_by_a_function(notebook, image_shape, filters=64):
    """A sigmoid applied by a Lambda layer, which declares no activation: only its outputs give it away."""
    return with_last_layers(notebook["discriminator"](image_shape, filters),
                            layers.Lambda(keras.ops.sigmoid, dtype="float32"), drop=0)


def discriminator_built_in_call(notebook, image_shape, filters=64):
    return DiscriminatorBuiltInCall(image_shape, functools.partial(notebook["discriminator"], filters=filters))


def discriminator_adding_weights_every_call(notebook, image_shape, filters=64):
    return NewDiscriminatorEveryCall(functools.partial(notebook["discriminator"], image_shape, filters))


# --- generator -------------------------------------------------------------------------------------


def generator_at_half_size(notebook, z_dim, image_shape, **options):
    """Its last transposed convolution has stride 1, so it never doubles to the full size."""
    return with_last_layers(notebook["generator"](z_dim, image_shape, **options),
                            layers.Conv2DTranspose(image_shape[-1], 4, 1, padding="same"), layers.Activation("tanh"),
                            drop=2)


def generator_always_in_colour(notebook, z_dim, image_shape, **options):
    return with_last_layers(notebook["generator"](z_dim, image_shape, **options),
                            layers.Conv2DTranspose(3, 4, 2, padding="same"), layers.Activation("tanh"), drop=2)


def generator_without_tanh(notebook, z_dim, image_shape, **options):
    return with_last_layers(notebook["generator"](z_dim, image_shape, **options),
                            layers.Activation("linear", dtype="float32"))


def generator_ignoring_z_dim(notebook, z_dim, image_shape, **options):
    return notebook["generator"](100, image_shape, **options)


def generator_ignoring_z(notebook, z_dim, image_shape, **options):
    """Draws from a constant input: every z gives the same image."""
    model = notebook["generator"](z_dim, image_shape, **options)
    zeros = layers.Dense(z_dim, use_bias=False, kernel_initializer="zeros", trainable=False)
    return keras.Sequential([keras.Input((z_dim,)), zeros, *model.layers])


def generator_with_sigmoid(notebook, z_dim, image_shape, **options):
    """Images in [0, 1]: inside [-1, 1], but never as dark as the real images' -1."""
    return with_last_layers(notebook["generator"](z_dim, image_shape, **options),
                            layers.Activation("sigmoid", dtype="float32"))


def generator_stopping_the_gradient_inside(notebook, z_dim, image_shape, **options):
    return with_gradient_stopped_after(notebook["generator"](z_dim, image_shape, **options), 0)


def generator_with_a_frozen_layer(notebook, z_dim, image_shape, **options):
    return frozen_first_layer(notebook["generator"](z_dim, image_shape, **options))


def generator_ignoring_filters(notebook, z_dim, image_shape, filters=64, **options):
    return notebook["generator"](z_dim, image_shape, **options)


def generator_ignoring_full_resolution_layer(notebook, z_dim, image_shape, full_resolution_layer=False, **options):
    return notebook["generator"](z_dim, image_shape, **options)


def generator_always_with_full_resolution_layer(notebook, z_dim, image_shape, full_resolution_layer=False, **options):
    return notebook["generator"](z_dim, image_shape, **options, full_resolution_layer=True)


# --- model_loss ------------------------------------------------------------------------------------


def model_loss_labels_swapped(notebook, discriminator, generator, real_images, z):
    """D calls real images fake and fakes real; G wants its fakes called fake."""
    cross_entropy = notebook["cross_entropy"]
    real_logits = discriminator(real_images, training=True)
    fake_logits = discriminator(generator(z, training=True), training=True)
    d_loss = cross_entropy(tf.zeros_like(real_logits), real_logits) + cross_entropy(tf.ones_like(fake_logits),
                                                                                    fake_logits)
    g_loss = cross_entropy(tf.zeros_like(fake_logits), fake_logits)
    return d_loss, g_loss


def model_loss_fakes_through_a_clone(notebook, discriminator, generator, real_images, z):
    """Scores the fakes with a new copy of the discriminator, with its own (fresh) weights."""
    return notebook["model_loss"](FakesThrough(discriminator, keras.models.clone_model(discriminator)), generator,
                                  real_images, z)


def model_loss_fakes_through_a_copy_with_the_same_weights(notebook, discriminator, generator, real_images, z):
    """Scores the fakes with a copy holding the same values: equal losses, but d_loss's fake half
    trains the copy, not the discriminator."""
    copy = keras.models.clone_model(discriminator)
    copy.set_weights(discriminator.get_weights())
    return notebook["model_loss"](FakesThrough(discriminator, copy), generator, real_images, z)


class FakesThrough:
    """A stand-in discriminator that scores the real batch (the first call) with `real` and then the
    fakes with `fake`."""

    def __init__(self, real, fake):
        self.networks = iter([real, fake])

    def __call__(self, images, training=False):
        return next(self.networks)(images, training=training)


def model_loss_saturating_generator_loss(notebook, discriminator, generator, real_images, z):
    """G minimises minus D's loss on fakes (the original minimax form), whose gradient vanishes
    exactly when G most needs it."""
    fake_logits = discriminator(generator(z, training=True), training=True)
    d_loss, _ = notebook["model_loss"](discriminator, generator, real_images, z)
    return d_loss, -notebook["cross_entropy"](tf.zeros_like(fake_logits), fake_logits)


def model_loss_per_example(notebook, discriminator, generator, real_images, z):
    """The cross-entropy is not averaged over the batch: each loss is a vector."""
    per_example = keras.losses.BinaryCrossentropy(from_logits=True, reduction=None)
    return with_globals(notebook["model_loss"], cross_entropy=per_example)(discriminator, generator, real_images, z)


def in_inference_mode(network):
    return lambda inputs, training=None: network(inputs, training=False)


def model_loss_in_inference_mode(notebook, discriminator, generator, real_images, z):
    """Calls the networks with training=False: batch norm uses (and never updates) its running statistics."""
    return notebook["model_loss"](in_inference_mode(discriminator), in_inference_mode(generator), real_images, z)


def model_loss_generator_in_inference_mode(notebook, discriminator, generator, real_images, z):
    return notebook["model_loss"](discriminator, in_inference_mode(generator), real_images, z)


def model_loss_probabilities_as_logits(notebook, discriminator, generator, real_images, z):
    """Keras' BinaryCrossentropy() expects probabilities by default; the discriminator gives logits."""
    return with_globals(notebook["model_loss"], cross_entropy=keras.losses.BinaryCrossentropy())(
        discriminator, generator, real_images, z)


def model_loss_fakes_detached_for_the_generator(notebook, discriminator, generator, real_images, z):
    """G's loss scores stopped copies of its images: no gradient reaches G."""
    d_loss, _ = notebook["model_loss"](discriminator, generator, real_images, z)
    fake_logits = discriminator(tf.stop_gradient(generator(z, training=True)), training=True)
    return d_loss, notebook["cross_entropy"](tf.ones_like(fake_logits), fake_logits)


# --- model_opt -------------------------------------------------------------------------------------


def adam(learning_rate, beta1, variables):
    """Adam, with loss scaling in mixed precision as the notebook has: the variants break something else."""
    optimizer = keras.optimizers.Adam(learning_rate, beta_1=beta1)
    if keras.config.dtype_policy().name == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    optimizer.build(variables)
    return optimizer


def gan_step(model_loss, discriminator, generator, updates):
    """A training step that, for each (losses, variables, optimizer) in `updates`, applies the gradients
    of the sum of those losses ("d_loss", "g_loss") to those variables."""
    def train_step(real_images, z):
        with tf.GradientTape(persistent=True) as tape:
            d_loss, g_loss = model_loss(discriminator, generator, real_images, z)
            losses = dict(d_loss=d_loss, g_loss=g_loss)
            summed = [optimizer.scale_loss(tf.add_n([losses[name] for name in loss_names]))
                      for loss_names, _, optimizer in updates]
        for loss, (_, variables, optimizer) in zip(summed, updates):
            optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return d_loss, g_loss

    return train_step


def model_opt_d_optimizer_on_all_variables(notebook, discriminator, generator, learning_rate, beta1):
    """The discriminator's optimizer also moves the generator's weights, along d_loss."""
    all_variables = discriminator.trainable_variables + generator.trainable_variables
    d_optimizer = adam(learning_rate, beta1, all_variables)
    g_optimizer = adam(learning_rate, beta1, generator.trainable_variables)
    train_step = gan_step(notebook["model_loss"], discriminator, generator, [
        (["d_loss"], all_variables, d_optimizer),
        (["g_loss"], generator.trainable_variables, g_optimizer),
    ])
    return train_step, d_optimizer, g_optimizer


def model_opt_one_optimizer_for_both_losses(notebook, discriminator, generator, learning_rate, beta1):
    """One optimizer follows d_loss + g_loss over all the weights."""
    all_variables = discriminator.trainable_variables + generator.trainable_variables
    optimizer = adam(learning_rate, beta1, all_variables)
    train_step = gan_step(notebook["model_loss"], discriminator, generator,
                          [(["d_loss", "g_loss"], all_variables, optimizer)])
    return train_step, optimizer, optimizer


def model_opt_one_optimizer_object_for_both_networks(notebook, discriminator, generator, learning_rate, beta1):
    """Each network follows its own loss, but through the same Adam object (and so the same step count)."""
    optimizer = adam(learning_rate, beta1, discriminator.trainable_variables + generator.trainable_variables)
    train_step = gan_step(notebook["model_loss"], discriminator, generator, [
        (["d_loss"], discriminator.trainable_variables, optimizer),
        (["g_loss"], generator.trainable_variables, optimizer),
    ])
    return train_step, optimizer, optimizer


def model_opt_ignoring_beta1(notebook, discriminator, generator, learning_rate, beta1):
    """Adam with its default beta_1 (0.9), not the one given (0.5 in the DCGAN paper)."""
    return with_globals(notebook["model_opt"], keras=types.SimpleNamespace(
        optimizers=types.SimpleNamespace(Adam=lambda rate, beta_1: keras.optimizers.Adam(rate),
                                         LossScaleOptimizer=keras.optimizers.LossScaleOptimizer)))(
        discriminator, generator, learning_rate, beta1)


def model_opt_returning_the_optimizers_swapped(notebook, discriminator, generator, learning_rate, beta1):
    train_step, d_optimizer, g_optimizer = notebook["model_opt"](discriminator, generator, learning_rate, beta1)
    return train_step, g_optimizer, d_optimizer


def model_opt_returning_the_losses_swapped(notebook, discriminator, generator, learning_rate, beta1):
    train_step, d_optimizer, g_optimizer = notebook["model_opt"](discriminator, generator, learning_rate, beta1)
    return (lambda real_images, z: train_step(real_images, z)[::-1]), d_optimizer, g_optimizer


def model_opt_with_a_step_that_runs_only_eagerly(notebook, discriminator, generator, learning_rate, beta1):
    """The step reads its losses back as NumPy numbers, which a compiled step cannot do."""
    train_step, d_optimizer, g_optimizer = notebook["model_opt"](discriminator, generator, learning_rate, beta1)
    return (lambda real_images, z: tuple(float(loss.numpy()) for loss in train_step(real_images, z))), \
        d_optimizer, g_optimizer


def model_opt_ignoring_the_learning_rate(notebook, discriminator, generator, learning_rate, beta1):
    """Adam at its default learning rate, 1e-3."""
    return notebook["model_opt"](discriminator, generator, 1e-3, beta1)


def model_opt_in_inference_mode(notebook, discriminator, generator, learning_rate, beta1):
    """The notebook's model_opt, with a model_loss that calls the networks with training=False."""
    model_opt = with_globals(notebook["model_opt"],
                             model_loss=functools.partial(model_loss_in_inference_mode, notebook))
    return model_opt(discriminator, generator, learning_rate, beta1)


# --- update_average --------------------------------------------------------------------------------


def update_average_of_the_trainable_weights_only(notebook, average, model, ema, steps):
    """Leaves batch norm's running statistics behind."""
    decay = tf.minimum(ema, tf.cast(steps, tf.float32) / (tf.cast(steps, tf.float32) + 9))
    for mean, weight in zip(average.trainable_weights, model.trainable_weights):
        mean.assign(decay * mean + (1 - decay) * weight)


def update_average_by_ema_of_the_way(notebook, average, model, ema, steps):
    """Moves `ema` of the way (90 %) rather than `1 - ema`."""
    notebook["update_average"](average, model, 1 - ema, steps)


def update_average_moving_the_generator(notebook, average, model, ema, steps):
    """Moves the trained generator towards the average instead."""
    notebook["update_average"](model, average, ema, steps)


def update_average_of_a_whole_ema_as_given(notebook, average, model, ema, steps):
    """Takes `ema` as it comes: a whole 0 (`-p celeba_ema 0`) meets float32 steps."""
    steps = tf.cast(steps, tf.float32)
    decay = tf.minimum(ema, steps / (steps + 9))
    for mean, weight in zip(average.weights, model.weights):
        mean.assign(decay * mean + (1 - decay) * weight)


def update_average_only_eagerly(notebook, average, model, ema, steps):
    """Reads the decay back as a NumPy number, which a compiled step cannot do."""
    decay = min(ema, float(steps.numpy()) / (float(steps.numpy()) + 9))
    for mean, weight in zip(average.weights, model.weights):
        mean.assign(decay * mean + (1 - decay) * weight)


# --- measure_statistics ----------------------------------------------------------------------------


def norms(model):
    return [layer for layer in model.layers if isinstance(layer, layers.BatchNormalization)]


def measure_statistics_in_inference_mode(notebook, model, z):
    """Runs the model in inference mode, which uses the statistics rather than measuring them."""
    model(z, training=False)


def measure_statistics_with_the_momentum_kept(notebook, model, z):
    """One training-mode pass at the layers' own momentum: the statistics move only 10 % of the way."""
    model(z, training=True)


def measure_statistics_leaving_the_momentum_at_0(notebook, model, z):
    """Measures, but leaves every layer's momentum at 0, so later training keeps only the last batch's."""
    for layer in norms(model):
        layer.momentum = 0.0
    model(z, training=True)


def measure_statistics_of_the_first_layer_only(notebook, model, z):
    """Sets the first batch norm layer's momentum to 0, and no other's."""
    first = norms(model)[0]
    momentum, first.momentum = first.momentum, 0.0
    model(z, training=True)
    first.momentum = momentum


def measure_statistics_on_a_copy(notebook, model, z):
    """Measures a clone of the model, which is then thrown away."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    notebook["measure_statistics"](copy, z)


# --- learning_rate_schedule ------------------------------------------------------------------------


def schedule_held_throughout(notebook, learning_rate, total_steps, cooldown):
    """Never cools down."""
    return learning_rate


def schedule_falling_over_the_whole_run(notebook, learning_rate, total_steps, cooldown):
    """Cools down from the first step, whatever `cooldown` says."""
    return keras.optimizers.schedules.CosineDecay(learning_rate, total_steps)


class HeldThenStraightDown(keras.optimizers.schedules.LearningRateSchedule):
    """Held for `hold` steps, then a straight line to 0 at `total_steps`."""

    def __init__(self, learning_rate, hold, total_steps):
        self.learning_rate, self.hold, self.total_steps = learning_rate, hold, total_steps

    def __call__(self, step):
        left = (self.total_steps - tf.cast(step, tf.float32)) / (self.total_steps - self.hold)
        return self.learning_rate * tf.clip_by_value(left, 0.0, 1.0)


def schedule_falling_in_a_straight_line(notebook, learning_rate, total_steps, cooldown):
    """Held, then a straight line to 0 in place of the cosine."""
    steps = round(cooldown * total_steps)
    return HeldThenStraightDown(learning_rate, total_steps - steps, total_steps) if steps else learning_rate


def schedule_with_the_held_part_and_the_cooldown_swapped(notebook, learning_rate, total_steps, cooldown):
    """Cools down over the first `1 - cooldown` of the run's length instead of the last `cooldown`."""
    return notebook["learning_rate_schedule"](learning_rate, total_steps, 1 - cooldown if cooldown else 0)


def schedule_stopping_at_a_tenth(notebook, learning_rate, total_steps, cooldown):
    """Cools down to a tenth of the rate, not to 0."""
    steps = round(cooldown * total_steps)
    if not steps:
        return learning_rate
    return keras.optimizers.schedules.CosineDecay(learning_rate, steps, alpha=0.1, warmup_target=learning_rate,
                                                  warmup_steps=total_steps - steps)


def schedule_as_a_python_function(notebook, learning_rate, total_steps, cooldown):
    """A function of the step, which Adam would call with no argument at all."""
    schedule = notebook["learning_rate_schedule"](learning_rate, total_steps, cooldown)
    return schedule if isinstance(schedule, float) else lambda step: schedule(step)


# --- train -----------------------------------------------------------------------------------------


def train_without_resuming(notebook, **kwargs):
    """Saves checkpoints but never restores them, so running it again starts over."""
    class NeverResuming(helper.TrainingRun):
        def _restore(self, checkpoint):
            pass

    return with_globals(notebook["train"], helper=helper_with(TrainingRun=NeverResuming))(**kwargs)


def train_returning_an_average_never_updated(notebook, **kwargs):
    """The average generator is made, but no step moves it."""
    return with_globals(notebook["train"], update_average=lambda *args: None)(**kwargs)


def train_drawing_with_the_statistics_kept_in_training(notebook, **kwargs):
    """Never measures the average's batch norm statistics before drawing."""
    return with_globals(notebook["train"], measure_statistics=lambda *args: None)(**kwargs)


def train_stepping_twice_per_batch(notebook, **kwargs):
    """Each batch trains both networks twice, while train counts one step."""
    def model_opt(*args):
        train_step, d_optimizer, g_optimizer = notebook["model_opt"](*args)

        def twice(images, z):
            train_step(images, z)
            return train_step(images, z)

        return twice, d_optimizer, g_optimizer

    return with_globals(notebook["train"], model_opt=model_opt)(**kwargs)


def train_without_saving_pictures(notebook, **kwargs):
    """Shows the samples and the loss curve inline but saves neither."""
    def show_grid(images, title, path=None, **options):
        helper.show_grid(images, title, **options)

    def plot_losses(losses, title, path=None):
        helper.plot_losses(losses, title)

    unsaving = helper_with(show_grid=show_grid, plot_losses=plot_losses)
    return with_globals(notebook["train"], helper=unsaving)(**kwargs)


def train_ignoring_the_cooldown(notebook, **kwargs):
    """Accepts `cooldown` but trains at the constant rate."""
    return with_globals(notebook["train"], learning_rate_schedule=lambda rate, steps, cooldown: rate)(**kwargs)


def train_returning_losses_transposed(notebook, **kwargs):
    """Returns the losses as (2, steps): one row per network instead of one per step."""
    generator, losses = notebook["train"](**kwargs)
    return generator, np.transpose(losses)


# --- Each check fails on its broken variants --------------------------------------------------------

# train's check takes another path in mixed precision only where it counts the optimizers' steps and reads the
# cooled rate's end (float16 steps that overflow are skipped): its variants that break something else, each several
# seconds of training (slower still in float16 on a CPU), run in float32 alone.
FLOAT32 = ("float32",)


def broken(check, variant, message, policies=POLICIES):
    """`check` must fail on `variant` with an AssertionError whose message matches `message`, under each of
    `policies`."""
    return check, variant, message, policies


VARIANTS = [
    broken("discriminator", discriminator_with_two_logits, r"the output should be \(4, 1\), got \(4, 2\)"),
    broken("discriminator", discriminator_with_a_map_of_logits, r"the output should be \(4, 1\), got \(4, 4, 4, 1\)"),
    broken("discriminator", discriminator_with_sigmoid_dense, "should return logits; its last layer applies 'sigmoid'"),
    broken("discriminator", discriminator_with_sigmoid_layer, "should return logits; its last layer applies 'sigmoid'"),
    broken("discriminator", discriminator_built_in_call, "Two calls on the same images disagree"),
    broken("discriminator", discriminator_adding_weights_every_call, "A second call created new weights"),
    broken("discriminator", discriminator_ignoring_its_input, "Four different images gave the same logit"),
    broken("discriminator", discriminator_stopping_the_gradient_to_the_images,
           r"No gradient reaches the discriminator's input \(the images\)"),
    broken("discriminator", discriminator_stopping_the_gradient_inside,
           "The discriminator's output does not depend on the weights"),
    broken("discriminator", discriminator_with_a_frozen_layer, r"The discriminator's layers \['conv2d.*'\] are frozen"),
    broken("discriminator", discriminator_ignoring_filters, "The discriminator's width should follow `filters`"),
    broken("discriminator", discriminator_squashed_by_a_function,
           r"Driven hard, the outputs stay within .*: they should be logits"),
    broken("generator", generator_at_half_size, r"the output should be \(4, 28, 28, 1\), got \(4, 14, 14, 1\)"),
    broken("generator", generator_always_in_colour, r"the output should be \(4, 28, 28, 1\), got \(4, 28, 28, 3\)"),
    broken("generator", generator_without_tanh, r"The images should lie in \[-1, 1\]"),
    broken("generator", generator_ignoring_z_dim, r"The input should be \(None, 7\)"),
    broken("generator", generator_ignoring_z, "Four different z gave the same image"),
    broken("generator", generator_with_sigmoid, r"should be able to reach both -1 and 1"),
    broken("generator", generator_stopping_the_gradient_inside,
           "The generator's output does not depend on the weights"),
    broken("generator", generator_with_a_frozen_layer, r"The generator's layers \['dense.*'\] are frozen"),
    broken("generator", generator_ignoring_filters, "The generator's width should follow `filters`"),
    broken("generator", generator_ignoring_full_resolution_layer,
           r"With full_resolution_layer=True the image should be drawn from feature maps of its own size, \(28, 28\)"),
    broken("generator", generator_always_with_full_resolution_layer,
           r"With full_resolution_layer=False the last layer should draw the image from half-size feature maps"),
    broken("model_loss", model_loss_labels_swapped, r"\(d_loss, g_loss\) differ from sigmoid cross-entropy"),
    broken("model_loss", model_loss_fakes_through_a_clone, r"\(d_loss, g_loss\) differ from sigmoid cross-entropy"),
    broken("model_loss", model_loss_fakes_through_a_copy_with_the_same_weights, "The gradient of d_loss .* is wrong"),
    broken("model_loss", model_loss_saturating_generator_loss, r"\(d_loss, g_loss\) differ from sigmoid cross-entropy"),
    broken("model_loss", model_loss_per_example, "Each loss should be a scalar"),
    broken("model_loss", model_loss_in_inference_mode, "The discriminator's batch-norm statistics .* did not change"),
    broken("model_loss", model_loss_generator_in_inference_mode,
           "The generator's batch-norm statistics .* did not change"),
    broken("model_loss", model_loss_probabilities_as_logits, r"\(d_loss, g_loss\) differ from sigmoid cross-entropy"),
    broken("model_loss", model_loss_fakes_detached_for_the_generator, "The gradient of g_loss .* is wrong"),
    broken("model_opt", model_opt_d_optimizer_on_all_variables, "of generator weights .* took one Adam step"),
    broken("model_opt", model_opt_one_optimizer_for_both_losses, "Each network needs its own optimizer"),
    broken("model_opt", model_opt_one_optimizer_object_for_both_networks, "Each network needs its own optimizer"),
    broken("model_opt", model_opt_ignoring_beta1, r"is not where Adam\(learning_rate=0.01, beta_1=0.3\) puts it"),
    # Inference-mode batch norm also changes the gradients, so the step check fires before the
    # batch-norm one (in every seed tried); either is a catch.
    broken("model_opt", model_opt_in_inference_mode, "took one Adam step|Batch-norm statistic .* did not change"),
    broken("model_opt", model_opt_returning_the_optimizers_swapped,
           r"With d_optimizer's learning rate at 0, \[.*\] still moved"),
    broken("model_opt", model_opt_returning_the_losses_swapped, r"train_step should return \(d_loss, g_loss\)"),
    broken("model_opt", model_opt_ignoring_the_learning_rate, "took one Adam step"),
    broken("model_opt", model_opt_with_a_step_that_runs_only_eagerly, "train_step should run compiled"),
    broken("update_average", update_average_of_the_trainable_weights_only, "batch norm's statistics included"),
    broken("update_average", update_average_by_ema_of_the_way, "should move 10 % of the way"),
    broken("update_average", update_average_moving_the_generator, "changed the trained generator's"),
    broken("update_average", update_average_only_eagerly, "failed when compiled by tf.function"),
    broken("update_average", update_average_of_a_whole_ema_as_given, "with ema=0 failed when compiled"),
    broken("measure_statistics", measure_statistics_in_inference_mode, "layer 1's moving mean should be"),
    broken("measure_statistics", measure_statistics_with_the_momentum_kept, "layer 1's moving mean should be"),
    broken("measure_statistics", measure_statistics_leaving_the_momentum_at_0, "leave each layer's momentum"),
    broken("measure_statistics", measure_statistics_of_the_first_layer_only, "layer 2's moving mean should be"),
    broken("measure_statistics", measure_statistics_on_a_copy, "layer 1's moving mean should be"),
    broken("learning_rate_schedule", schedule_held_throughout,
           r"With cooldown=0.25 over 200 steps, the rates at steps .* should be"),
    broken("learning_rate_schedule", schedule_falling_over_the_whole_run,
           r"With cooldown=0.0 over 100 steps, the rates at steps .* should be"),
    broken("learning_rate_schedule", schedule_falling_in_a_straight_line,
           r"With cooldown=0.25 over 200 steps, .* they are \[0.001, 0.001, 0.001, 0.0008, 0.0005, "),
    broken("learning_rate_schedule", schedule_with_the_held_part_and_the_cooldown_swapped,
           r"With cooldown=0.25 over 200 steps, .* they are \[0.001, 0.00075, "),
    broken("learning_rate_schedule", schedule_stopping_at_a_tenth,
           r"With cooldown=0.25 over 200 steps, .* they are \[0.001, 0.001, 0.001, 0.0009141, 0.00055, 0.0001,"),
    broken("learning_rate_schedule", schedule_as_a_python_function, "should return a number or a keras.optimizers"),
    broken("train", train_ignoring_the_cooldown, "With cooldown=1 the learning rates should fall to 0"),
    broken("train", train_stepping_twice_per_batch, "each optimizer should have taken 4; the checkpoint says"),
    broken("train", train_drawing_with_the_statistics_kept_in_training, "statistics that do not fit its weights",
           FLOAT32),
    broken("train", train_without_resuming, "should resume from its last checkpoint", FLOAT32),
    broken("train", train_returning_an_average_never_updated, "With ema=0, train should return the trained", FLOAT32),
    broken("train", train_without_saving_pictures, r"Saved pictures: \[\]", FLOAT32),
    broken("train", train_returning_losses_transposed, r"4 finite \(d_loss, g_loss\) rows, got shape \(2, 4\)",
           FLOAT32),
]
BROKEN = [pytest.param(policy, check, variant, message, id=f"{policy}-{variant.__name__}")
          for check, variant, message, policies in VARIANTS for policy in policies]


@pytest.mark.parametrize("policy, check, variant, message", BROKEN, indirect=["policy"])
def test_check_fails_on_broken_variant(notebook, inline_figures, capsys, policy, check, variant, message):
    with pytest.raises(AssertionError, match=message):
        run_check(check, functools.partial(variant, notebook))
    assert "Tests Passed" not in capsys.readouterr().out
