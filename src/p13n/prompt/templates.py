"""Task templates: the instruction for each task, and how one retrieved item of the user's data
reads in the prompt. LaMP 1-7 follow the per-task prompts of the LaMP paper (Salemi et al., 2023,
Table 5); LongLaMP's follow Kumar et al., 2024."""

from __future__ import annotations

import json
from dataclasses import dataclass

from p13n.datasets.spec import TaskSpec
from p13n.errors import ConfigError
from p13n.registry import Registry
from p13n.retrieve import RetrievedItem


def quote(text: str) -> str:
    """``text`` as one JSON string literal: quotes, backslashes and line breaks are escaped, and
    so is ``<``, so nothing inside user data can close the data block or start a new line of the
    prompt's own structure."""
    return json.dumps(text, ensure_ascii=False).replace("<", "\\u003c")


@dataclass(frozen=True)
class TaskTemplate:
    """``instruction`` frames the input (``{input}``); ``item`` renders one retrieved item from
    its quoted ``{title}``, ``{text}`` and ``{kind}``; ``item_untitled`` when it has no title."""

    name: str
    description: str
    instruction: str
    item: str
    item_untitled: str = "{text}"
    system: str = "You are a helpful assistant."

    def render_item(self, item: RetrievedItem, text: str) -> str:
        if item.title:
            return self.item.format(title=quote(item.title), text=quote(text), kind=item.kind)
        return self.item_untitled.format(text=quote(text), kind=item.kind)

    def render_input(self, text: str) -> str:
        return self.instruction.format(input=text)


templates: Registry[TaskTemplate] = Registry("task template")


def _register(template: TaskTemplate) -> None:
    templates.register(template.name, template)


_register(
    TaskTemplate(
        "chat",
        "free chat",
        "{input}",
        item="{kind} {title}: {text}",
        item_untitled="{kind}: {text}",
        system="You are a helpful assistant. Answer the user in a way that fits them.",
    )
)
_register(
    TaskTemplate(
        "lamp1",
        "LaMP-1 personalized citation identification",
        "{input}",
        item="{title}",
        item_untitled="{text}",
    )
)
_register(
    TaskTemplate(
        "lamp2",
        "LaMP-2 personalized movie tagging / news categorization",
        "Which tag does this text relate to among the given tags? Just answer with the tag name "
        "without further explanation.\n{input}",
        item="the tag for {text} is {title}",
    )
)
_register(
    TaskTemplate(
        "lamp3",
        "LaMP-3 personalized product rating",
        "What is the score of the following review on a scale of 1 to 5? Just answer with 1, 2, "
        "3, 4, or 5 without further explanation.\nreview: {input}",
        item="{title} is the score for {text}",
    )
)
_register(
    TaskTemplate(
        "lamp4",
        "LaMP-4 personalized news headline generation",
        "Generate a headline for the following article: {input}",
        item="{title} is the title for {text}",
    )
)
_register(
    TaskTemplate(
        "lamp5",
        "LaMP-5 personalized scholarly title generation",
        "Generate a title for the following abstract of a paper: {input}",
        item="{title} is the title for {text}",
    )
)
_register(
    TaskTemplate(
        "lamp6",
        "LaMP-6 personalized email subject generation",
        "Generate a subject for the following email: {input}",
        item="{title} is the subject for {text}",
    )
)
_register(
    TaskTemplate(
        "lamp7",
        "LaMP-7 personalized tweet paraphrasing",
        "Paraphrase the following tweet without any explanation before or after it: {input}",
        item="{text}",
    )
)
_register(
    TaskTemplate(
        "longlamp-abstract",
        "LongLaMP personalized abstract generation",
        "Generate an abstract for the title {input}",
        item="{text} is the abstract for the title {title}",
    )
)
_register(
    TaskTemplate(
        "longlamp-topic",
        "LongLaMP personalized topic writing",
        "Generate the content for a reddit post {input}",
        item="{text} is a summary for {title}",
    )
)
_register(
    TaskTemplate(
        "longlamp-review",
        "LongLaMP personalized product review writing",
        "Generate the review text written by a reviewer for this product, rating and summary: "
        "{input}",
        item="{text} is the review for {title}",
    )
)


def task_template(spec: TaskSpec) -> TaskTemplate:
    """The template a task's prompts use: a registered one by name, or the task's own (from its
    ``task.toml``), registered under the task's name on first use so a ``PersonalizerConfig``
    can name it. Another template already holding that name is an error, not an overwrite."""
    if spec.prompt is None:
        return templates.get(spec.template)
    own = TaskTemplate(
        spec.template,
        f"the task {spec.name!r}'s own template (task.toml)",
        spec.prompt.instruction,
        item=spec.prompt.item,
        item_untitled=spec.prompt.item_untitled,
        system=spec.prompt.system,
    )
    if spec.template in templates:
        if templates.get(spec.template) != own:
            raise ConfigError(
                f"task {spec.name!r}: its task.toml writes its own template, and a different "
                f"template named {spec.template!r} is already registered; rename the task "
                "(name = ... in task.toml)"
            )
        return own
    return templates.register(spec.template, own)
