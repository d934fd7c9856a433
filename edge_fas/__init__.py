"""edge-fas: real-time multimodal (RGB + depth + IR) face anti-spoofing for edge camera rigs."""

__version__ = "0.1.0"
