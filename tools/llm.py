"""Structured replies from any OpenAI-compatible chat completions endpoint (OpenAI, vLLM, Ollama, llama.cpp).

`LLMClient.structured` asks for JSON matching a pydantic model. It first sends the schema as a
`json_schema` response format; servers that reject that (HTTP 400) or return something that does
not validate get the schema in the prompt instead, and invalid output is re-asked once with the
validation error. Every failure the user can act on becomes an `LLMError` with a one-line message.
"""

from __future__ import annotations

import json
from typing import TypeVar

import openai
from pydantic import BaseModel, ValidationError

T = TypeVar("T", bound=BaseModel)

OPENAI_URL = "https://api.openai.com/v1"
# Local servers (vLLM, Ollama, llama.cpp) ignore the key, but the client refuses to run without one.
PLACEHOLDER_KEY = "no-key-needed"


class LLMError(RuntimeError):
    """The LLM endpoint could not give a usable answer; the message says what to do, on one line."""


class LLMClient:
    def __init__(
        self, base_url: str | None, api_key: str | None, model: str, timeout: float = 60, max_retries: int = 2
    ):
        if not api_key and not base_url:
            raise LLMError(
                "no LLM endpoint configured: set OPENAI_API_KEY (for api.openai.com) or OPENAI_BASE_URL "
                "(for a local server such as vLLM, Ollama or llama.cpp), or run with --llm none"
            )
        self.endpoint = (base_url or OPENAI_URL).rstrip("/")
        self.model = model
        self._openai = openai.OpenAI(
            base_url=self.endpoint, api_key=api_key or PLACEHOLDER_KEY, timeout=timeout, max_retries=max_retries
        )
        self._timeout, self._max_retries = timeout, max_retries
        # Cleared once the server rejects `json_schema`, so later calls go straight to the prompt path.
        self._json_schema = True

    def structured(self, system: str, user: str, schema: type[T]) -> T:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        if self._json_schema:
            try:
                return self._parse(messages, schema)
            except openai.BadRequestError:
                self._json_schema = False
            except ValidationError as error:
                # The server accepted the schema but did not enforce it: re-ask once, schema in the prompt.
                return self._reask(messages, schema, error)
        try:
            return self._prompted(messages, schema)
        except ValidationError as error:
            return self._reask(messages, schema, error)

    def _parse(self, messages: list[dict], schema: type[T]) -> T:
        completion = self._call(self._openai.chat.completions.parse, messages, response_format=schema)
        message = completion.choices[0].message
        if message.parsed is None:
            refusal = _one_line(message.refusal or "no content")
            raise LLMError(f"model {self.model!r} at {self.endpoint} refused to answer: {refusal}")
        return message.parsed

    def _prompted(self, messages: list[dict], schema: type[T]) -> T:
        completion = self._call(self._openai.chat.completions.create, _with_json_instruction(messages, schema))
        return schema.model_validate_json(_json_object(completion.choices[0].message.content or ""))

    def _reask(self, messages: list[dict], schema: type[T], error: ValidationError) -> T:
        retry = [
            *messages,
            {
                "role": "user",
                "content": f"Your previous reply was not valid: {_describe(error)}. "
                "Reply again with only the corrected JSON object.",
            },
        ]
        try:
            return self._prompted(retry, schema)
        except ValidationError as second:
            raise LLMError(
                f"model {self.model!r} at {self.endpoint} twice returned output that is not a valid {schema.__name__} "
                f"({_describe(second)}); "
                "try a model that follows JSON instructions, or run with --llm none"
            ) from None

    def _call(self, method, messages: list[dict], **kwargs):
        """One request; the client's own retries cover 429, 5xx and dropped connections."""
        try:
            return method(model=self.model, messages=messages, **kwargs)
        except openai.APITimeoutError:
            raise LLMError(
                f"the LLM endpoint {self.endpoint} did not answer within {self._timeout:g} s; "
                "is the server overloaded, or the model too slow for it?"
            ) from None
        except openai.APIConnectionError:
            raise LLMError(
                f"cannot reach the LLM endpoint {self.endpoint}; is the server at that URL running? "
                "(set OPENAI_BASE_URL to change it)"
            ) from None
        except (openai.AuthenticationError, openai.PermissionDeniedError) as error:
            raise LLMError(
                f"the LLM endpoint {self.endpoint} rejected the API key (HTTP {error.status_code}): set OPENAI_API_KEY"
            ) from None
        except openai.NotFoundError:
            raise LLMError(
                f"the LLM endpoint {self.endpoint} answered 404 for model {self.model!r}: pass --model with a model it "
                "serves, and check that OPENAI_BASE_URL ends in /v1"
            ) from None
        except openai.RateLimitError:
            raise LLMError(
                f"the LLM endpoint {self.endpoint} is still rate-limiting (HTTP 429) after {self._max_retries} "
                "retries; try again later"
            ) from None
        except openai.APIStatusError as error:
            if isinstance(error, openai.BadRequestError) and "response_format" in kwargs:
                raise  # most likely `json_schema` is unsupported: the caller falls back to the prompt path
            raise LLMError(
                f"the LLM endpoint {self.endpoint} failed (HTTP {error.status_code}: {_one_line(error.message)})"
            ) from None
        except (openai.LengthFinishReasonError, openai.ContentFilterFinishReasonError) as error:
            raise LLMError(f"model {self.model!r} at {self.endpoint} stopped early: {_one_line(str(error))}") from None


def _with_json_instruction(messages: list[dict], schema: type[BaseModel]) -> list[dict]:
    """The messages with the schema spelled out in the system prompt, for servers without `json_schema`."""
    system, *rest = messages
    instruction = (
        "\n\nReply with only one JSON object, no prose and no code fence, that validates against this JSON schema:\n"
        + json.dumps(schema.model_json_schema())
    )
    return [{**system, "content": system["content"] + instruction}, *rest]


def _json_object(content: str) -> str:
    """The outermost {...} of a reply: models without enforced JSON often wrap it in a code fence or prose."""
    start, end = content.find("{"), content.rfind("}")
    return content[start : end + 1] if 0 <= start < end else content


def _describe(error: ValidationError) -> str:
    """The validation errors on one line, each with where it is and what was given."""
    problems = []
    for e in error.errors(include_url=False):
        where = ".".join(str(part) for part in e["loc"]) or "reply"
        problems.append(f"{where}: {e['msg']} (got {_one_line(repr(e.get('input')))[:80]})")
    return "; ".join(problems)


def _one_line(text: str) -> str:
    return " ".join(text.split())
