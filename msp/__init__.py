"""msp: meta-sequential prediction (Miyato, Koyama & Fukumizu, NeurIPS 2022)."""

__version__ = "0.1.0"
