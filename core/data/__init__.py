"""Data and preprocessing: raw records through a handler (``records``), prompt templates
(``templates``), and the preprocessing stage that writes the tokenized dataset (``preprocess``).

``from r1zero.data import DatasetHandler, Item, RowRef, load_items`` is part of the plugin authors'
API (docs/plugins.md) and keeps working.
"""

from r1zero.data.records import *  # noqa: F401,F403
