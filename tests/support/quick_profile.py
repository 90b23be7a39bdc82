"""The notebook's quick profile: its parameters at toy sizes, in a scratch folder, for the tests and CI.

pytest puts them into the notebook's parameters for nbval (conftest.py); papermill takes them as `-p`:

    papermill dlnd_face_generation.ipynb out.ipynb $(python tests/support/quick_profile.py FOLDER)
"""

import sys

# Sizes that run every cell in a minute or so: a few steps of each stage, a few hundred images.
QUICK = dict(mnist_epochs=1, celeba_images=256, celeba_image_size=32, max_images=256, quality_images=1_000,
             fid_images=100, download_celeba=False)


def quick_parameters(folder, **changes):
    """The quick profile's parameters, with data, outputs and pictures in `folder`, and `changes` on top."""
    folder = str(folder)
    return {**QUICK, "data_dir": folder, "output_dir": folder, "images_dir": folder, **changes}


def papermill_arguments(parameters):
    """`-p NAME VALUE` for each parameter, as papermill's command line takes them."""
    return [word for name, value in parameters.items() for word in ("-p", name, str(value))]


def parameters_source(parameters):
    """Python lines that set the parameters, as papermill's injected cell does."""
    return "".join(f"{name} = {value!r}\n" for name, value in parameters.items())


if __name__ == "__main__":
    print(" ".join(papermill_arguments(quick_parameters(sys.argv[1]))))
