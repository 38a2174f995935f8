"""The LLM's prompts: one jinja2 file per question in prompts/ (`stance.md.j2`, `decompose.md.j2`,
`citation_fit.md.j2`), each a system part and a user part split at a line holding only `---`.

Both parts are rendered with StrictUndefined, so a value the template names but the caller did not
give is an error, never an empty string in a prompt. Values are inserted as they are (no escaping,
no template syntax inside them is evaluated); retrieved text is defused by the caller before it
goes between the prompt's data tags (agent/llm_analyst.py `_as_data`). `Prompt.sha256` is the
hash of the file's bytes, which report.json records in `method.prompts`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

import jinja2

_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False)
SEPARATOR = "\n---\n"


@dataclass(frozen=True)
class Prompt:
    name: str
    sha256: str
    system: jinja2.Template
    user: jinja2.Template

    def render(self, **values) -> tuple[str, str]:
        """The system and user messages; jinja2.UndefinedError when a value the template names is missing."""
        return self.system.render(**values).strip(), self.user.render(**values).strip()


@cache
def load_prompt(name: str) -> Prompt:
    raw = files("prompts").joinpath(name).read_bytes()
    text = raw.decode("utf-8")
    if SEPARATOR not in text:
        raise ValueError(f"prompts/{name} has no '---' line between its system and user parts")
    system, user = text.split(SEPARATOR, 1)
    return Prompt(name, hashlib.sha256(raw).hexdigest(), _ENV.from_string(system), _ENV.from_string(user))
