"""r1zero: DeepSeek-R1-Zero style GRPO with rule rewards, as a small core plus plugins."""

__version__ = "0.1.0"
