"""Structured replies from any OpenAI-compatible chat completions endpoint (OpenAI, vLLM, Ollama, llama.cpp).

`LLMClient.structured` asks for JSON matching a pydantic model in the first of three modes the
endpoint takes: `json_schema` (the server enforces the schema), `json_object` (the server enforces
JSON, the schema is in the prompt), `prompt` (the schema in the prompt, no response_format). A mode
the server rejects (HTTP 400/422) is skipped, and the first mode that works is remembered for the
client's life. Reasoning blocks (`<think>…</think>`) and code fences are stripped before parsing; a
reply that is invalid, empty or cut off (finish_reason "length") is re-asked once, saying what was wrong.

Every failure is an `LLMError` with a one-line message saying what to do. `AnswerFailed`, its
subclass, is a fault of one answer (a timeout, 429, 5xx or dropped connection after the openai
client's own retries; a reply unusable twice): the endpoint works, so a caller may fall back for that
answer alone. Any other LLMError (no endpoint, key rejected, unknown model, unreachable at `probe`) is
the configuration's: retrying or falling back cannot help.

Cost and load (tools/llm_costs.py, tools/llm_cache.py): every request's token counts (the reply's
`usage`) go to `usage`, per stage (the question asked: "decompose", "stance", ...) and model. With a
`cache`, a question asked before at the same endpoint and model, with the same prompt and schema, is
answered from it: no request, no tokens, counted as a cache hit. At most `concurrency` requests are
in flight at once, however many threads ask.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx
import openai
from openai.types.chat import ChatCompletion
from openai.types.chat.chat_completion import Choice
from pydantic import BaseModel, ValidationError

from tools.llm_cache import ResponseCache, response_key
from tools.llm_costs import Usage

T = TypeVar("T", bound=BaseModel)
Mode = Literal["json_schema", "json_object", "prompt"]
# Strongest first: each later mode leaves more of the schema to the model's goodwill.
MODES: tuple[Mode, ...] = ("json_schema", "json_object", "prompt")

OPENAI_URL = "https://api.openai.com/v1"
# Local servers (vLLM, Ollama, llama.cpp) ignore the key, but the client refuses to run without one.
PLACEHOLDER_KEY = "no-key-needed"
# Listing models is instant on a working server; a host that swallows packets must not hold a run for minutes.
PROBE_TIMEOUT = 10.0
# Requests in flight at once per client (COLLAPSE_AUDIT_LLM_CONCURRENCY): enough to overlap a server's
# latency, few enough that a local server is not swamped and a hosted one does not rate-limit at once.
DEFAULT_CONCURRENCY = 4


class LLMError(RuntimeError):
    """The LLM endpoint could not give a usable answer; the message says what to do, on one line."""


class AnswerFailed(LLMError):
    """One answer could not be had, though the endpoint works: a caller may fall back for this answer.

    `reason` is what went wrong, without the advice the message adds for a user."""

    def __init__(self, reason: str, advice: str):
        super().__init__(f"{reason}; {advice}")
        self.reason = reason


class _Unusable(Exception):
    """A reply whose content cannot be used; the message completes "Your previous reply ..." for the re-ask."""


class _FormatRejected(Exception):
    """The server rejected the request's response_format: the next mode may be accepted."""


class LLMClient:
    def __init__(
        self, base_url: str | None, api_key: str | None, model: str, timeout: float = 60, max_retries: int = 2,
        *, concurrency: int = DEFAULT_CONCURRENCY, cache: ResponseCache | None = None, usage: Usage | None = None,
        http_client: httpx.Client | None = None,
    ):
        if not api_key and not base_url:
            raise LLMError(
                "no LLM endpoint configured: set OPENAI_API_KEY (for api.openai.com) or OPENAI_BASE_URL "
                "(for a local server such as vLLM, Ollama or llama.cpp), or run with --llm none"
            )
        base = (base_url or OPENAI_URL).rstrip("/")
        self.endpoint = public_url(base)  # what messages, reports and cache keys name: no credentials
        self.model = model
        self._openai = openai.OpenAI(
            base_url=base, api_key=api_key or PLACEHOLDER_KEY, timeout=timeout, max_retries=max_retries,
            http_client=http_client,  # `run --record` / `replay`: a recording transport (tools/recording.py)
        )
        self._timeout, self._max_retries = timeout, max_retries
        if concurrency < 1:
            raise LLMError(f"the LLM concurrency must be 1 or more, not {concurrency} (COLLAPSE_AUDIT_LLM_CONCURRENCY)")
        self.concurrency = concurrency
        self._slots = threading.BoundedSemaphore(concurrency)
        self.cache = cache
        self.usage = usage or Usage()
        # The first of MODES this endpoint answered; calls start there, so a rejection costs one request per client.
        self.mode: Mode = MODES[0]

    def probe(self) -> None:
        """Raise LLMError when the endpoint is unreachable or rejects the key, before any work is asked of it.

        It lists the models (GET /models), which OpenAI, vLLM, Ollama and llama.cpp all serve cheaply
        without loading a model. Any other answer, an error status included, means a server is
        listening and took the key: whether it serves the model shows on the first real request."""
        timeout = min(self._timeout, PROBE_TIMEOUT)
        try:
            self._openai.with_options(timeout=timeout).models.list()
        except openai.APITimeoutError:
            raise LLMError(
                f"the LLM endpoint {self.endpoint} did not answer within {timeout:g} s; is the server at that "
                "URL running, and not overloaded? (set OPENAI_BASE_URL to change it)"
            ) from None
        except openai.APIConnectionError:
            raise LLMError(
                f"cannot reach the LLM endpoint {self.endpoint}; is the server at that URL running? "
                "(set OPENAI_BASE_URL to change it)"
            ) from None
        except (openai.AuthenticationError, openai.PermissionDeniedError) as error:
            raise LLMError(self._key_rejected(error)) from None
        except (openai.APIStatusError, openai.APIResponseValidationError):
            pass  # e.g. 404 from a server without a model list: it is up, and that is all a probe asks

    def structured(self, system: str, user: str, schema: type[T], *, stage: str | None = None) -> T:
        """The model's answer as `schema`; `stage` names the question for the usage counts (default: the
        schema's name). A cached answer to the same question is returned without a request."""
        stage = stage or schema.__name__
        key = None
        if self.cache is not None:
            key = response_key(self.endpoint, self.model, system, user, schema.model_json_schema())
            cached = self.cache.get(key)
            if cached is not None:
                try:
                    answer = schema.model_validate_json(cached)
                except ValidationError:
                    pass  # a record that no longer fits its schema is a miss
                else:
                    self.usage.cache_hit(stage, self.model)
                    return answer
        answer = self._answer(system, user, schema, stage)
        if key is not None:
            self.cache.put(key, answer.model_dump_json())
        return answer

    def _answer(self, system: str, user: str, schema: type[T], stage: str) -> T:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        try:
            return self._reply(messages, schema, spell_out=False, stage=stage)
        except _Unusable as problem:
            repair = [
                *messages,
                {"role": "user",
                 "content": f"Your previous reply {problem}. Reply again with only the corrected JSON object."},
            ]
        try:
            return self._reply(repair, schema, spell_out=True, stage=stage)
        except _Unusable as problem:
            raise AnswerFailed(
                f"model {self.model!r} at {self.endpoint} twice gave no valid {schema.__name__} (its reply {problem})",
                "try a model that follows JSON instructions, or run with --llm none",
            ) from None

    def _reply(self, messages: list[dict], schema: type[T], *, spell_out: bool, stage: str) -> T:
        """One answer, parsed; `spell_out` puts the schema in the prompt even when the server enforces it
        (a repair: the server let an invalid reply through, so the model must see what is wanted)."""
        choice = self._complete(messages, schema, spell_out, self.mode, stage)
        if choice.finish_reason == "length":
            raise _Unusable('was cut off at the length limit (finish_reason "length"); answer more briefly')
        if choice.finish_reason == "content_filter" or choice.message.refusal:
            why = _one_line(choice.message.refusal or "stopped by the content filter")
            raise AnswerFailed(f"model {self.model!r} at {self.endpoint} refused to answer: {why}", "try another model")
        text = _answer_text(choice.message.content or "")
        if not text:
            raise _Unusable("was empty: it held no JSON object, only reasoning or nothing at all")
        try:
            return schema.model_validate_json(text)
        except ValidationError as error:
            raise _Unusable(f"was not valid: {_describe(error)}") from None

    def _complete(self, messages: list[dict], schema: type[BaseModel], spell_out: bool, mode: Mode, stage: str) -> Choice:
        strict = mode == "json_schema"
        request: dict = {"messages": messages if strict and not spell_out else _with_json_instruction(messages, schema)}
        if strict:
            # The openai client's own strict form of the schema (every field required, no extra ones).
            parameters = openai.pydantic_function_tool(schema)["function"]["parameters"]
            request["response_format"] = {
                "type": "json_schema", "json_schema": {"name": schema.__name__, "strict": True, "schema": parameters}
            }
        elif mode == "json_object":
            request["response_format"] = {"type": "json_object"}
        try:
            completion = self._call(request, stage)
        except _FormatRejected:
            # only a request with a response_format is rejected this way, so a next mode exists
            return self._complete(messages, schema, spell_out, MODES[MODES.index(mode) + 1], stage)
        self.mode = mode
        return completion.choices[0]

    def _call(self, request: dict, stage: str) -> ChatCompletion:
        """One request, once one of the `concurrency` slots is free; the openai client's own retries cover
        429, 5xx, timeouts and dropped connections. The reply's token counts go to `usage`."""
        try:
            with self._slots:
                completion = self._openai.chat.completions.create(model=self.model, **request)
        except openai.APITimeoutError:
            raise AnswerFailed(
                f"the LLM endpoint {self.endpoint} did not answer within {self._timeout:g} s "
                f"({self._max_retries} retries)",
                "is the server overloaded, or the model too slow for it?",
            ) from None
        except openai.APIConnectionError:
            raise AnswerFailed(
                f"the connection to the LLM endpoint {self.endpoint} failed ({self._max_retries} retries)",
                "is the server at that URL still running?",
            ) from None
        except (openai.AuthenticationError, openai.PermissionDeniedError) as error:
            raise LLMError(self._key_rejected(error)) from None
        except openai.NotFoundError:
            raise LLMError(
                f"the LLM endpoint {self.endpoint} answered 404 for model {self.model!r}: pass --model with a model it "
                "serves, and check that OPENAI_BASE_URL ends in /v1"
            ) from None
        except openai.RateLimitError:
            raise AnswerFailed(
                f"the LLM endpoint {self.endpoint} is still rate-limiting (HTTP 429) after {self._max_retries} retries",
                "try again later",
            ) from None
        except (openai.BadRequestError, openai.UnprocessableEntityError) as error:
            if "response_format" in request:
                raise _FormatRejected from None  # most likely this structured-output mode is unsupported
            raise AnswerFailed(
                f"the LLM endpoint {self.endpoint} rejected the request "
                f"(HTTP {error.status_code}: {_one_line(error.message)})",
                "is the paper's text too long for the model's context?",
            ) from None
        except openai.APIStatusError as error:
            raise AnswerFailed(
                f"the LLM endpoint {self.endpoint} failed (HTTP {error.status_code}: {_one_line(error.message)})",
                "try again later, or check the server's log",
            ) from None
        # A proxy's error page comes back as a 200 too: the client then returns its text, not a completion.
        if not isinstance(completion, ChatCompletion) or not completion.choices:
            raise AnswerFailed(
                f"the LLM endpoint {self.endpoint} answered with no chat completion",
                "check that OPENAI_BASE_URL is the server's OpenAI-compatible /v1 URL",
            )
        self.usage.request(stage, self.model, completion.usage)
        return completion

    def _key_rejected(self, error: openai.APIStatusError) -> str:
        return f"the LLM endpoint {self.endpoint} rejected the API key (HTTP {error.status_code}): set OPENAI_API_KEY"


def public_url(url: str) -> str:
    """`url` without a user name, password or query (where a key might be written into it)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[-1], parts.path, "", "")).rstrip("/")


def _with_json_instruction(messages: list[dict], schema: type[BaseModel]) -> list[dict]:
    """The messages with the schema spelled out in the system prompt: for the modes where the server does
    not enforce it, and for a repair."""
    system, *rest = messages
    instruction = (
        "\n\nReply with only one JSON object, no prose and no code fence, that validates against this JSON schema:\n"
        + json.dumps(schema.model_json_schema())
    )
    return [{**system, "content": system["content"] + instruction}, *rest]


# Reasoning models put their thinking before the answer: a closed block, or one cut off (never closed).
_REASONING = re.compile(r"<think>.*?(?:</think>|\Z)", re.DOTALL | re.IGNORECASE)
# ... or only its end, when the chat template opened the block for them.
_REASONING_END = re.compile(r"\A.*?</think>", re.DOTALL | re.IGNORECASE)
_FENCE = re.compile(r"```[\w-]*[ \t]*\n?(.*?)```", re.DOTALL)


def _answer_text(content: str) -> str:
    """The JSON a reply holds: reasoning blocks dropped, a code fence's inside, then the outermost {...}
    (models without enforced JSON often wrap it in prose). Empty when nothing but reasoning is left."""
    text = _REASONING_END.sub("", _REASONING.sub("", content), count=1)
    fenced = _FENCE.search(text)
    text = fenced.group(1) if fenced else text
    start, end = text.find("{"), text.rfind("}")
    return (text[start : end + 1] if 0 <= start < end else text).strip()


def _describe(error: ValidationError) -> str:
    """The validation errors on one line, each with where it is and what was given."""
    problems = []
    for e in error.errors(include_url=False):
        where = ".".join(str(part) for part in e["loc"]) or "reply"
        problems.append(f"{where}: {e['msg']} (got {_one_line(repr(e.get('input')))[:80]})")
    return "; ".join(problems)


def _one_line(text: str) -> str:
    return " ".join(text.split())
