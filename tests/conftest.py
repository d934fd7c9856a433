"""Shared test set-up: Qt renders offscreen unless a test asks for a real (Xvfb) screen, and torch
uses one thread: on a 2-core CI box, torch's default of one thread per core fights the test's own
threads (capture, writer, Qt) and made training tests an order of magnitude slower."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("MPLBACKEND", "Agg")

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # the suite still reports what it can without torch
    pass
