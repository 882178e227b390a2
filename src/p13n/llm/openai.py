"""``openai``: any OpenAI-compatible chat-completions server (vLLM, Ollama, llama.cpp server,
OpenAI itself, or p13n's own ``p13n serve-llm``), through the official ``openai`` client, which
supplies timeouts and retries with exponential backoff."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

from p13n.errors import LLMError, LLMTimeoutError, LLMUnavailableError
from p13n.llm.base import (
    CharTokenizer,
    ChatMessage,
    Completion,
    GenerationOptions,
    Tokenizer,
    refuse_adapter_steering,
)


class OpenAILLM:
    """A model behind ``{base_url}/chat/completions``.

    The server's tokenizer is not visible from here: pass ``tokenizer`` (for instance the
    embedded model's, when the server runs it) for exact prompt budgets; otherwise prompts are
    fitted with an explicit, conservative character estimate (``CharTokenizer``).
    """

    backend = "openai"
    supports_streaming: ClassVar[bool] = True

    def __init__(
        self,
        model: str,
        *,
        base_url: str = "http://127.0.0.1:8000/v1",
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
        context_window: int = 8192,
        tokenizer: Tokenizer | None = None,
    ) -> None:
        import openai

        self.model = model
        self.base_url = base_url
        self.context_window = context_window
        self.tokenizer: Tokenizer = tokenizer or CharTokenizer()
        self.timeout = timeout
        self._client = openai.OpenAI(
            base_url=base_url,
            # Local servers need no key; a key is only ever sent when one is given.
            api_key=api_key or "not-needed",
            timeout=timeout,
            max_retries=max_retries,
        )

    def _request(self, messages: Sequence[ChatMessage], options: GenerationOptions) -> Any:
        refuse_adapter_steering(options, self.model)
        if options.contrast is not None:
            raise LLMError(
                f"{self.model}: context steering needs next-token logits, which an "
                "OpenAI-compatible server does not return"
            )
        request: dict[str, Any] = {
            "model": self.model,
            "messages": list(messages),
            "max_tokens": options.max_new_tokens,
            "temperature": options.temperature,
            "top_p": options.top_p,
            "seed": options.seed,
        }
        if options.stop:
            request["stop"] = list(options.stop)
        return request

    def _translate(self, error: Exception) -> LLMError:
        import openai

        where = f"the OpenAI-compatible server at {self.base_url}"
        if isinstance(error, openai.APITimeoutError):
            return LLMTimeoutError(
                f"{where} did not answer within {self.timeout:g} s (model {self.model!r}); "
                "raise the backend's timeout or use a smaller max_new_tokens"
            )
        if isinstance(error, openai.APIConnectionError):
            return LLMUnavailableError(
                f"cannot reach {where} (model {self.model!r}): is the server running, and is "
                "base_url right? (`p13n serve-llm` serves the embedded model)"
            )
        if isinstance(error, openai.APIStatusError):
            return LLMError(f"{where} answered {error.status_code}: {error.message}")
        return LLMError(f"{where} failed: {error}")

    def generate(self, messages: Sequence[ChatMessage], options: GenerationOptions) -> Completion:
        import openai

        try:
            response = self._client.chat.completions.create(**self._request(messages, options))
        except openai.OpenAIError as error:
            raise self._translate(error) from error
        choice = response.choices[0]
        usage = response.usage
        return Completion(
            text=(choice.message.content or "").strip(),
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            finish_reason=choice.finish_reason or "stop",
            model=response.model or self.model,
        )

    def stream(self, messages: Sequence[ChatMessage], options: GenerationOptions) -> Iterator[str]:
        import openai

        try:
            chunks = self._client.chat.completions.create(
                **self._request(messages, options), stream=True
            )
            for chunk in chunks:
                if chunk.choices and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content
        except openai.OpenAIError as error:
            raise self._translate(error) from error
