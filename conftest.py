"""pytest runs the notebook (via nbval) in its quick profile: toy sizes, in a scratch folder."""
import os

# Read by the notebook's kernel, which inherits this process's environment.
os.environ["DLND_QUICK_TEST"] = "1"
