"""Fixtures the engine tests share with the trainer's: the tiny model, tokenizer and data."""

from tests.trainer.conftest import tiny_setup  # noqa: F401 - fixture
