"""The machinery behind helper.py, one module per responsibility. helper.py imports from here; nothing here
imports helper.py.

- `face_quality`: how close generated faces are to real ones, offline, on the CPU (sliced Wasserstein distance).
"""
