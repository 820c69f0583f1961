"""Built-in dataset handler ``deepscaler``: Alpaca-style records -> prompt content + answer.

The roles of ``map_keys`` (MindSpeed-RL's ``R1AlpacaStyleInstructionHandler``, whose name is
registered too as an alias): ``prompt`` names the instruction field, ``query`` an optional
input appended after a newline, ``response`` the answer (kept verbatim as the ground truth),
``system`` an optional system text. An empty value means the role is unused. For
DeepScaleR-Preview: ``{"prompt": "problem", "query": "", "response": "answer", "system": ""}``.

Unlike MindSpeed-RL, a malformed record is never replaced by an empty prompt: it raises a
``DatasetError`` naming file, row and field (``--skip-bad-rows`` counts and skips it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from r1zero.data.records import DatasetHandler, Item, RowRef
from r1zero.host.hookspecs import hookimpl

ALIAS = "R1AlpacaStyleInstructionHandler"


class DeepScalerHandler(DatasetHandler):
    """problem [+ "\\n" + query] -> content; answer -> ground truth; id/row/source -> extra."""

    name = "deepscaler"

    def convert(self, record: Mapping[str, Any], map_keys: Mapping[str, str],
                where: RowRef) -> Item:
        prompt = self.text_field(record, map_keys, "prompt", where)
        query = self.text_field(record, map_keys, "query", where, required=False)
        answer = self.text_field(record, map_keys, "response", where, allow_int=True)
        system = self.text_field(record, map_keys, "system", where, required=False)
        content = f"{prompt}\n{query}" if query else prompt
        rid = record.get("id")
        if not isinstance(rid, (str, int)) or isinstance(rid, bool) or rid == "":
            rid = f"{Path(where.path).name}:{where.row}"
        extra = {"id": str(rid), "row": where.row, "source": where.path}
        return Item(content=content, ground_truth=answer, system=system, extra=extra)


@hookimpl
def register_dataset_handlers(register):
    handler = DeepScalerHandler()
    register(handler)
    register(handler, name=ALIAS)
