"""Imported once in the scoring forkserver (``preload_modules`` of ``base_acc`` and
``math_verify_reward``): warms math-verify there, so every worker forked afterwards -- one that
replaces a killed worker included -- starts warm (copy-on-write)."""

from r1zero.plugins.rewards.math_equiv import warm_up

SECONDS = warm_up()
