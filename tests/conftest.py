"""Shared test set-up: Qt renders offscreen unless a test asks for a real (Xvfb) screen."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("MPLBACKEND", "Agg")
