"""Prompt templates in MindSpeed-RL's ``templates.json`` entry format.

A template renders one user turn (and an optional system text) into the prompt string the
model continues. Slots are strings with ``{{name}}`` placeholders, lists of special-token names
(``[["bos_token"]]``) or sets of token ids; they are concatenated in order.

A field r1zero does not know (MindSpeed-RL's ``template_class`` on its ``qwen3`` entry, say) is
kept in ``Template.ignored`` and reported once per file as ignored; one that looks like a typo
of a known field (``format_usr``) is an error naming the field it resembles.
"""

from __future__ import annotations

import difflib
import json
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import attrs

from r1zero.host.errors import ConfigError
from r1zero.host.manager import PluginHost

log = logging.getLogger(__name__)
_REPORTED: set[tuple[str, tuple[str, ...]]] = set()     # (file, ignored fields) already logged

_FIELDS = ("name", "format_user", "format_assistant", "format_system", "format_observation",
           "format_function", "format_tools", "format_separator", "format_prefix",
           "default_system", "stop_words", "replace_eos", "efficient_eos", "thought_words",
           "tool_format", "mm_plugin", "enable_thinking")


@attrs.frozen
class Template:
    name: str
    format_user: tuple = ()
    format_system: tuple = ()
    format_prefix: tuple = ()
    format_separator: tuple = ()
    default_system: str = ""
    stop_words: tuple[str, ...] = ()
    replace_eos: bool = False
    source: str = ""
    ignored: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any], source: str = "") -> "Template":
        where = f"{source}: template {entry.get('name', '?')!r}" if source else "template"
        unknown = sorted(set(entry) - set(_FIELDS))
        typos = {u: difflib.get_close_matches(u, _FIELDS, n=1, cutoff=0.85) for u in unknown}
        typos = {u: m[0] for u, m in typos.items() if m}
        if typos:
            hint = ", ".join(f"{u!r} -> {m!r}" for u, m in typos.items())
            raise ConfigError(f"unknown field(s) {sorted(typos)} (did you mean {hint}?); "
                              f"known: {list(_FIELDS)}", path=where)
        if not isinstance(entry.get("name"), str) or not entry["name"]:
            raise ConfigError("entry has no 'name'", path=where)
        if "format_user" not in entry:
            raise ConfigError("entry has no 'format_user'", path=where)

        def slots(key: str) -> tuple:
            value = entry.get(key)
            if value is None:
                return ()
            if isinstance(value, list):     # a bare slot list, as written by hand
                value = {"slots": value}
            if not isinstance(value, Mapping) or not isinstance(value.get("slots"), list):
                raise ConfigError(f"{key} must be {{'slots': [...]}}, got {value!r}", path=where)
            return tuple(tuple(s) if isinstance(s, list) else s for s in value["slots"])

        stop = entry.get("stop_words") or []
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise ConfigError(f"stop_words must be a list of strings, got {stop!r}", path=where)
        return cls(entry["name"], slots("format_user"), slots("format_system"),
                   slots("format_prefix"), slots("format_separator"),
                   entry.get("default_system") or "", tuple(stop),
                   bool(entry.get("replace_eos", False)), source,
                   {u: entry[u] for u in unknown})

    def render(self, content: str, system: str | None = None, tokenizer: Any = None) -> str:
        """The prompt string: prefix + system turn (if the template has one) + user turn.

        Special-token slots render as the tokenizer's token text (e.g. its BOS), so tokenize
        the result with ``add_special_tokens=False``.
        """
        out = [self._slots(self.format_prefix, {}, tokenizer)]
        sys_text = system if system else self.default_system
        if self.format_system and sys_text:
            out.append(self._slots(self.format_system, {"content": sys_text}, tokenizer))
        out.append(self._slots(self.format_user, {"content": content}, tokenizer))
        return "".join(out)

    def _slots(self, slots: Sequence, values: Mapping[str, str], tokenizer: Any) -> str:
        parts = []
        for slot in slots:
            if isinstance(slot, str):
                for key, val in values.items():
                    slot = slot.replace("{{" + key + "}}", val)
                parts.append(slot)
            elif isinstance(slot, (tuple, list, set, dict)):
                for tok in slot:
                    parts.append(_special_token(tok, tokenizer, self.name))
        return "".join(parts)

    def stop_strings(self, tokenizer: Any = None) -> list[str]:
        """Stop strings for generation: the template's own, else the tokenizer's EOS."""
        stops = list(self.stop_words)
        eos = getattr(tokenizer, "eos_token", None)
        if eos and eos not in stops:
            stops.append(eos)
        return stops


def _special_token(tok: Any, tokenizer: Any, template: str) -> str:
    if isinstance(tok, int):
        if tokenizer is None:
            raise ConfigError(f"template {template!r} needs a tokenizer to render token id {tok}")
        return tokenizer.convert_ids_to_tokens(tok)
    if tokenizer is None:
        raise ConfigError(f"template {template!r} needs a tokenizer to render {tok!r}")
    text = getattr(tokenizer, tok, None)
    if not isinstance(text, str):
        raise ConfigError(f"template {template!r}: tokenizer has no {tok!r}")
    return text


def load_templates_file(path: str | Path) -> list[Template]:
    """Every entry of a MindSpeed-RL style ``templates.json`` (a JSON list)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("template file not found", path=str(path)) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"not valid JSON: {exc}", path=str(path)) from exc
    if isinstance(data, Mapping):
        data = [data]
    if not isinstance(data, list):
        raise ConfigError("expected a JSON list of template entries", path=str(path))
    out = []
    for i, entry in enumerate(data):
        if not isinstance(entry, Mapping):
            raise ConfigError(f"entry {i} is not an object", path=str(path))
        out.append(Template.from_entry(entry, source=str(path)))
    report_ignored(out, str(path))
    return out


def report_ignored(templates: Sequence[Template], source: str) -> list[str]:
    """Log, once per source and set of fields, the template fields r1zero keeps but does not
    use; returns them as ``template.field`` names."""
    names = [f"{t.name}.{f}" for t in templates for f in sorted(t.ignored)]
    key = (source, tuple(names))
    if names and key not in _REPORTED:
        _REPORTED.add(key)
        log.warning("%s: ignoring template field(s) r1zero does not use: %s", source,
                    ", ".join(names))
    return names


def get_template(name: str, file: str | None = None, plugin: str | None = None, *,
                 host: PluginHost) -> Template:
    """A template by name; entries of ``file`` (templates.json) take precedence."""
    if file:
        entries = {t.name: t for t in load_templates_file(file)}
        if name in entries:
            return entries[name]
        if plugin is None and name not in host.names("templates"):
            raise ConfigError(f"template {name!r} is neither in this file ({', '.join(entries)}) "
                              f"nor registered ({', '.join(host.names('templates'))})", path=file)
    return host.get("templates", name, plugin, "template.plugin")
