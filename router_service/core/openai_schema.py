"""The request schemas of OpenAI's prompt paths (chat completions, completions, responses), checked before the router
reads a body, for both transports.

A body is checked against the schema and then used as it came: nothing is coerced, dropped or added, so what the
schema allows passes unchanged (unknown keys too: vLLM and other backends read extensions such as
`chat_template_kwargs` or `top_k`). What it refuses is a 400 `invalid_request_error` whose `param` names the field
the way OpenAI does (`messages[2].content`): a wrong type, `null` where the API does not allow it (a user message's
content), an unknown role or part type, a number outside the API's range, a missing required field.

The models follow OpenAI's published API reference (2026-12); `GET /openapi.json` publishes them, and the schema-
driven fuzz (`benchmarks/reliability/fuzz.py`) generates requests from that document.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic.config import JsonDict
from pydantic_core import ErrorDetails

from router_service.errors import InvalidRequest

__all__ = [
    "MAX_MODEL_NAME_CHARS",
    "MODEL_NAME_PATTERN",
    "ChatCompletionRequest",
    "CompletionRequest",
    "ResponsesRequest",
    "check_request",
    "invalid_request",
]

MAX_MODEL_NAME_CHARS = 256
"""The model name is echoed in response headers, which Envoy bounds (60 KiB in all by default)."""

INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1


class _Schema(BaseModel):
    """Known keys type-checked strictly (no coercion: `"1"` is not a number); unknown keys allowed."""

    model_config = ConfigDict(extra="allow", strict=True)


MODEL_NAME_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
"""Not blank, and no control characters: the name is echoed in response headers, where they are not allowed."""
_MODEL_NAME = re.compile(MODEL_NAME_PATTERN)


def _model_name(name: str) -> str:
    if not _MODEL_NAME.fullmatch(name):
        raise ValueError("must be a non-empty string without control characters")
    return name


def _integral(value: object) -> object:
    """JSON Schema's integer includes 1.0: a float with no fraction is read as that integer (for the check only;
    the body goes on as sent, and backends' decoders read it the same way)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


Integral = BeforeValidator(_integral)


ModelName = Annotated[
    str,
    Field(max_length=MAX_MODEL_NAME_CHARS, json_schema_extra={"pattern": MODEL_NAME_PATTERN}),
    AfterValidator(_model_name),
]
Temperature = Annotated[float, Field(ge=0, le=2)]
Probability = Annotated[float, Field(ge=0, le=1)]
Penalty = Annotated[float, Field(ge=-2, le=2)]
TokenCount = Annotated[int, Field(ge=1, le=INT32_MAX), Integral]
Choices = Annotated[int, Field(ge=1, le=128), Integral]
Seed = Annotated[int, Field(ge=-(2**63), le=INT64_MAX), Integral]
Stop = str | Annotated[list[str], Field(max_length=4)]
LogitBias = dict[str, Annotated[int, Field(ge=-100, le=100), Integral]]
Metadata = dict[str, str]


class StreamOptions(_Schema):
    include_usage: bool | None = None
    include_obfuscation: bool | None = None


# --- chat completions: content parts ---------------------------------------------------------------------------


class TextPart(_Schema):
    type: Literal["text"]
    text: str


class ImageUrl(_Schema):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(_Schema):
    type: Literal["image_url"]
    image_url: ImageUrl


class InputAudio(_Schema):
    data: str
    format: str


class AudioPart(_Schema):
    type: Literal["input_audio"]
    input_audio: InputAudio


class FileRef(_Schema):
    file_data: str | None = None
    file_id: str | None = None
    filename: str | None = None


class FilePart(_Schema):
    type: Literal["file"]
    file: FileRef


class RefusalPart(_Schema):
    type: Literal["refusal"]
    refusal: str


UserPart = Annotated[TextPart | ImagePart | AudioPart | FilePart, Field(discriminator="type")]
AssistantPart = Annotated[TextPart | RefusalPart, Field(discriminator="type")]
TextContent = str | list[TextPart]


# --- chat completions: messages --------------------------------------------------------------------------------


class FunctionCall(_Schema):
    name: str
    arguments: str


class FunctionToolCall(_Schema):
    id: str
    type: Literal["function"]
    function: FunctionCall


class CustomCall(_Schema):
    name: str
    input: str


class CustomToolCall(_Schema):
    id: str
    type: Literal["custom"]
    custom: CustomCall


ToolCall = Annotated[FunctionToolCall | CustomToolCall, Field(discriminator="type")]


class SystemMessage(_Schema):
    role: Literal["system"]
    content: TextContent
    name: str | None = None


class DeveloperMessage(_Schema):
    role: Literal["developer"]
    content: TextContent
    name: str | None = None


class UserMessage(_Schema):
    role: Literal["user"]
    content: str | list[UserPart]
    name: str | None = None


_SAYS_SOMETHING: JsonDict = {
    "anyOf": [
        {"required": ["content"], "properties": {"content": {"not": {"type": "null"}}}},
        {"required": ["tool_calls"], "properties": {"tool_calls": {"type": "array", "minItems": 1}}},
        {"required": ["function_call"], "properties": {"function_call": {"type": "object"}}},
        {"required": ["audio"], "properties": {"audio": {"type": "object", "minProperties": 1}}},
    ]
}
"""An assistant message has content, or tool calls (a function call, audio) instead: its JSON schema says so too."""


class AssistantMessage(_Schema):
    model_config = ConfigDict(json_schema_extra=_SAYS_SOMETHING)

    role: Literal["assistant"]
    refusal: str | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    function_call: FunctionCall | None = None
    audio: dict[str, Any] | None = None
    content: Annotated[str | list[AssistantPart] | None, Field(validate_default=True)] = None
    """Declared last: its check reads the fields above (`info.data`)."""

    @field_validator("content")
    @classmethod
    def _says_something(cls, content: object, info: ValidationInfo) -> object:
        if content is None and not any(info.data.get(k) for k in ("tool_calls", "function_call", "audio")):
            raise ValueError("an assistant message needs content unless it has tool_calls or function_call")
        return content


class ToolMessage(_Schema):
    role: Literal["tool"]
    content: TextContent
    tool_call_id: str


class FunctionMessage(_Schema):
    role: Literal["function"]
    content: str | None
    name: str


Message = Annotated[
    SystemMessage | DeveloperMessage | UserMessage | AssistantMessage | ToolMessage | FunctionMessage,
    Field(discriminator="role"),
]


# --- chat completions: tools -----------------------------------------------------------------------------------


class FunctionDefinition(_Schema):
    name: Annotated[str, Field(min_length=1)]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class FunctionTool(_Schema):
    type: Literal["function"]
    function: FunctionDefinition


class CustomDefinition(_Schema):
    name: Annotated[str, Field(min_length=1)]
    description: str | None = None
    format: dict[str, Any] | None = None


class CustomTool(_Schema):
    type: Literal["custom"]
    custom: CustomDefinition


Tool = Annotated[FunctionTool | CustomTool, Field(discriminator="type")]


class NamedFunction(_Schema):
    name: str


class FunctionChoice(_Schema):
    type: Literal["function"]
    function: NamedFunction


class CustomChoice(_Schema):
    type: Literal["custom"]
    custom: NamedFunction


class AllowedTools(_Schema):
    mode: Literal["auto", "required"]
    tools: list[dict[str, Any]]


class AllowedToolsChoice(_Schema):
    type: Literal["allowed_tools"]
    allowed_tools: AllowedTools


ToolChoice = (
    Literal["none", "auto", "required"]
    | Annotated[FunctionChoice | CustomChoice | AllowedToolsChoice, Field(discriminator="type")]
)


class ResponseFormat(_Schema):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None


class ChatCompletionRequest(_Schema):
    """`POST /v1/chat/completions`."""

    model: ModelName
    messages: Annotated[list[Message], Field(min_length=1)]
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    max_tokens: TokenCount | None = None
    max_completion_tokens: TokenCount | None = None
    n: Choices | None = None
    temperature: Temperature | None = None
    top_p: Probability | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    logit_bias: LogitBias | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20), Integral] | None = None
    stop: Stop | None = None
    seed: Seed | None = None
    user: str | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    functions: list[FunctionDefinition] | None = None
    function_call: Literal["none", "auto"] | NamedFunction | None = None
    response_format: ResponseFormat | None = None
    reasoning_effort: str | None = None
    metadata: Metadata | None = None
    store: bool | None = None
    service_tier: str | None = None
    modalities: list[str] | None = None
    chat_template_kwargs: dict[str, Any] | None = None
    """vLLM's extension (VSR's reasoning families set it)."""


# --- completions -----------------------------------------------------------------------------------------------


class CompletionRequest(_Schema):
    """`POST /v1/completions` (legacy). Token-id prompts are valid OpenAI but cannot be guarded: the router answers
    them with a 400 of its own (`prompt_paths`)."""

    model: ModelName
    prompt: str | list[str] | list[int] | list[list[int]]
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    max_tokens: Annotated[int, Field(ge=0, le=INT32_MAX), Integral] | None = None
    n: Choices | None = None
    best_of: Annotated[int, Field(ge=0, le=20), Integral] | None = None
    echo: bool | None = None
    logprobs: Annotated[int, Field(ge=0, le=5), Integral] | None = None
    temperature: Temperature | None = None
    top_p: Probability | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    logit_bias: LogitBias | None = None
    stop: Stop | None = None
    seed: Seed | None = None
    suffix: str | None = None
    user: str | None = None


# --- responses -------------------------------------------------------------------------------------------------


class InputText(_Schema):
    type: Literal["input_text"]
    text: str


class OutputText(_Schema):
    type: Literal["output_text"]
    text: str
    annotations: list[dict[str, Any]] | None = None


class InputImage(_Schema):
    type: Literal["input_image"]
    image_url: str | None = None
    file_id: str | None = None
    detail: Literal["auto", "low", "high"] | None = None


class InputFile(_Schema):
    type: Literal["input_file"]
    file_id: str | None = None
    file_data: str | None = None
    file_url: str | None = None
    filename: str | None = None


class ResponseRefusal(_Schema):
    type: Literal["refusal"]
    refusal: str


InputPart = Annotated[InputText | OutputText | InputImage | InputFile | ResponseRefusal, Field(discriminator="type")]


class InputMessage(_Schema):
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[InputPart]


def _not_message(item_type: str) -> str:
    if item_type == "message":
        raise ValueError("a message item needs a role and a content")
    return item_type


class OtherItem(_Schema):
    """An input item that is not a message (a tool call or its output, a reasoning item, a reference): carried to
    the backend as given, with no prompt for the guards."""

    type: Annotated[str, Field(min_length=1), AfterValidator(_not_message)]


class ResponsesRequest(_Schema):
    """`POST /v1/responses`."""

    model: ModelName
    input: str | list[InputMessage | OtherItem]
    instructions: str | None = None
    stream: bool | None = None
    max_output_tokens: TokenCount | None = None
    temperature: Temperature | None = None
    top_p: Probability | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    previous_response_id: str | None = None
    store: bool | None = None
    metadata: Metadata | None = None
    truncation: Literal["auto", "disabled"] | None = None
    user: str | None = None
    include: list[str] | None = None
    reasoning: dict[str, Any] | None = None
    text: dict[str, Any] | None = None


_SCHEMAS: dict[str, type[_Schema]] = {
    "chat": ChatCompletionRequest,
    "completions": CompletionRequest,
    "responses": ResponsesRequest,
}


def check_request(kind: str, body: Mapping[str, Any]) -> None:
    """Raise InvalidRequest (400, `param` set) when `body` is not a valid `kind` request ("chat", "completions",
    "responses"); the body itself is left as it is."""
    try:
        _SCHEMAS[kind].model_validate(body)
    except ValidationError as e:
        raise invalid_request(e, body) from None


# --- a validation error as OpenAI says it ----------------------------------------------------------------------


def invalid_request(error: ValidationError, body: object) -> InvalidRequest:
    """The most specific problem of a failed validation, as an InvalidRequest whose `param` names the field as it
    is in the body (`messages[0].content[1].type`): pydantic's location also names union members and
    discriminator tags, which are skipped by following the location through the body itself."""
    found = [(_param(e, body), e) for e in error.errors(include_url=False)]
    depth = max(len(path) for path, _ in found)
    deepest = [(path, e) for path, e in found if len(path) == depth]
    path = deepest[0][0]
    param = _render(path) or None
    return InvalidRequest(_message(param, [e for _, e in deepest]), param)


def _param(error: ErrorDetails, body: object) -> list[str | int]:
    path: list[str | int] = []
    value = body
    loc = error["loc"]
    for i, step in enumerate(loc):
        inside_object = isinstance(value, dict) and isinstance(step, str) and step in value
        inside_array = isinstance(value, list) and isinstance(step, int) and 0 <= step < len(value)
        if inside_object or inside_array:
            value = value[step]  # type: ignore[index]
            path.append(step)
        elif error["type"] == "missing" and i == len(loc) - 1 and isinstance(step, str):
            path.append(step)
    if error["type"] in ("union_tag_invalid", "union_tag_not_found") and isinstance(value, dict):
        path.append(str((error.get("ctx") or {}).get("discriminator", "type")).strip("'"))
    return path


def _render(path: Sequence[str | int]) -> str:
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else step)
    return out


def _message(param: str | None, errors: Sequence[ErrorDetails]) -> str:
    where = f"'{param}'" if param else "the request body"
    first = errors[0]
    if first["type"] == "missing":
        return f"Missing required parameter: {where}."
    if first["type"] == "union_tag_invalid":
        ctx = first.get("ctx") or {}
        return f"Invalid value for {where}: {ctx.get('tag')!r} is not one of {ctx.get('expected_tags')}."
    if first["type"] == "union_tag_not_found":
        return f"Missing required parameter: {where}."
    expected = "; or ".join(dict.fromkeys(_lower_first(e["msg"]) for e in errors))
    if first.get("input") is None and first["type"] not in ("value_error", "assertion_error"):
        return f"Invalid type for {where}: null is not allowed here ({expected})."
    return f"Invalid value for {where}: {expected}."


def _lower_first(text: str) -> str:
    text = text.removeprefix("Value error, ")
    return text[:1].lower() + text[1:]
