"""Code Llama - Instruct prompts and answers, as plain Python (no LSP, no model).

Why a module of its own: the prompt is where user text meets the model's control structure, so its rules
are kept in one small, testable place:

* the layout is Meta's reference ``chat_completion`` for one turn with a system prompt:
  ``[BOS] + encode("[INST] <<SYS>>\\n{system}\\n<</SYS>>\\n\\n{user} [/INST]")``; BOS is an id, never text;
* turn forgery is neutralised: every ``[INST]``, ``[/INST]``, ``<<SYS>>``, ``<</SYS>>`` in the user message
  (code, file name, instruction) gets a zero-width space after its opening bracket, so it no longer reads as
  the marker; user text is encoded as plain text only (sentencepiece never emits a control id for text,
  so ``<s>``, ``</s>`` or ``▁<PRE>`` in a file stay ordinary characters); ``check_prompt`` then verifies on
  the ids that BOS is only at position 0, no other control id appears, and the markers form exactly one
  ``[INST] <<SYS>> <</SYS>> [/INST]`` structure;
* the token budget is explicit: a selection that does not fit is cut at a line boundary and the prompt
  carries a note saying so, which the answer repeats (never a silent cut);
* answers are parsed defensively: the first fenced block (an unclosed one counts: the answer may have
  been cut by the token limit), re-indented to where the selection sits.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from typing import Literal

from lsp_server.completion.languages import LANGUAGES, facts
from lsp_server.completion.text import leading_ws
from model_backend.errors import ServiceError
from model_backend.tokenization import CodeLlamaTokenizer

Task = Literal["explain", "refactor", "docstring"]

ZWSP = "\u200b"
# The reference refuses these exact markers; we also catch case and spacing variants ("[ inst ]").
_MARKER = re.compile(r"(\[|<<)(?=\s*/?\s*(?:inst\s*\]|sys\s*>>))", re.IGNORECASE)
_NEUTRALISED = re.compile(r"(\[|<<)\u200b(?=\s*/?\s*(?:inst\s*\]|sys\s*>>))", re.IGNORECASE)
_ANY_MARKER = re.compile(r"\[\s*/?\s*inst\s*\]|<<\s*/?\s*sys\s*>>", re.IGNORECASE)

LANGUAGE_NAMES: dict[str, str] = {f.id: f.name for f in LANGUAGES.values()}

SYSTEM: dict[Task, str] = {
    "explain": "You are an expert programmer who explains code clearly and accurately. Answer in Markdown.",
    "refactor": "You are an expert programmer who rewrites code. Keep the behaviour unless asked otherwise. "
                "Answer with code only.",
    "docstring": "You are an expert programmer who writes concise, accurate documentation.",
}
DEFAULT_REFACTOR = "make it clearer and simpler without changing what it does"


class PromptError(ServiceError):
    """The prompt cannot be built (budget too small) or failed its structure check."""


@dataclass(frozen=True)
class Selection:
    """What the user asked about, as text: the code and where it sits."""

    code: str
    language: str | None  # LSP language id
    file_name: str
    context: str = ""  # surrounding definitions: imports, enclosing class/function signatures
    target: str = ""  # docstring: "function `name`" / "class `name`"


@dataclass(frozen=True)
class InstructPrompt:
    """Prompt ids, and how much of the selection the model sees."""

    ids: list[int]
    user: str  # the (neutralised) user message, for logs and ``codellama/lastPrompt``
    shown_lines: int
    total_lines: int

    @property
    def cut(self) -> bool:
        return self.shown_lines < self.total_lines


# -- forgery ---------------------------------------------------------------------------------------
def neutralise(text: str) -> str:
    """``[INST]`` → ``[\\u200bINST]`` (and the other markers alike): visible text kept, marker broken."""
    return _MARKER.sub(lambda m: m.group(1) + ZWSP, text)


def restore(text: str) -> str:
    """Undo ``neutralise`` in an answer that echoes the user's code (the zero-width spaces we added)."""
    return _NEUTRALISED.sub(lambda m: m.group(1), text)


def check_prompt(tok: CodeLlamaTokenizer, ids: list[int]) -> None:
    """Raise ``PromptError`` unless ``ids`` is exactly one well-formed Instruct turn.

    Checked on the ids, i.e. on what the model reads: BOS at 0 and nowhere else, no other control id,
    and the text the pieces spell has markers ``[INST]``, ``<<SYS>>``, ``<</SYS>>``, ``[/INST]`` exactly
    once each, in that order, ``[INST]`` first and ``[/INST]`` last.
    """
    if not ids or ids[0] != tok.bos_id:
        raise PromptError("the prompt must start with the BOS id")
    controls = [i for i, t in enumerate(ids) if i > 0 and (tok.sp.is_control(t) or tok.sp.is_unknown(t))]
    if controls:
        raise PromptError(f"control ids in the prompt body at positions {controls[:5]}")
    text = spelled(tok, ids[1:])
    found = [re.sub(r"\s", "", m.group(0)).upper() for m in _ANY_MARKER.finditer(text)]
    if found != ["[INST]", "<<SYS>>", "<</SYS>>", "[/INST]"]:
        raise PromptError(f"the prompt's markers are {found}, expected one [INST] <<SYS>> <</SYS>> [/INST]")
    if not text.lstrip().upper().startswith("[INST]") or not text.rstrip().upper().endswith("[/INST]"):
        raise PromptError("the prompt must start with [INST] and end with [/INST]")


def spelled(tok: CodeLlamaTokenizer, ids: list[int]) -> str:
    """The text the pieces of ``ids`` spell, piece by piece (byte pieces as bytes): what the model reads."""
    out = bytearray()
    for t in ids:
        piece: str = tok.sp.id_to_piece(t)
        if tok.sp.is_byte(t):
            out.append(int(piece[3:-1], 16))
        else:
            out += piece.replace("▁", " ").encode("utf-8")
    return out.decode("utf-8", "replace")


# -- prompt ----------------------------------------------------------------------------------------
def fence_for(code: str) -> str:
    """A backtick fence longer than any run of backticks inside ``code`` (so the block cannot end early)."""
    longest = max((len(run) for run in re.findall(r"`+", code)), default=0)
    return "`" * max(3, longest + 1)


def fence_language(language: str | None) -> str:
    """The Markdown fence tag for an LSP language id (``typescriptreact`` → ``tsx``); unknown ids as they are."""
    found = facts(language)
    return found.fence_tag if found else language or ""


def task_text(task: Task, sel: Selection, instruction: str | None) -> str:
    """The request, last in the user message (models follow what comes last best)."""
    lang = LANGUAGE_NAMES.get(sel.language or "", "the same language")
    fence = f"```{fence_language(sel.language)}"
    if task == "explain":
        return ("Explain what the selected code does: its purpose, how it works step by step, and anything "
                "surprising. Be concise.")
    if task == "refactor":
        how = (instruction or "").strip() or DEFAULT_REFACTOR
        return (f"Rewrite the selected code: {how}. The result replaces the selection in the file, so it must "
                f"be valid {lang} at that place. Answer with only the rewritten code in one {fence} block.")
    what = sel.target or "the selected definition"
    return (f"Write a docstring for the {what}: one summary line, then its parameters and return value if any. "
            "Answer with only the docstring text, without quotes and without the code.")


def user_message(task: Task, sel: Selection, code: str, instruction: str | None, note: str = "") -> str:
    """Language, file, surrounding definitions, the selection in a fenced block, then the task."""
    lang = LANGUAGE_NAMES.get(sel.language or "", sel.language or "plain text")
    tag = fence_language(sel.language)
    parts = [f"Language: {lang}\nFile: {sel.file_name}"]
    if sel.context.strip():
        fence = fence_for(sel.context)
        parts.append(f"Surrounding definitions (the selection is inside them):\n{fence}{tag}\n"
                     f"{sel.context.rstrip()}\n{fence}")
    fence = fence_for(code)
    parts.append(f"Selected code{note}:\n{fence}{tag}\n{code.rstrip()}\n{fence}")
    parts.append(task_text(task, sel, instruction))
    return neutralise("\n\n".join(parts))  # the whole message: markers split across pieces are caught too


def encode_turn(tok: CodeLlamaTokenizer, system: str, user: str) -> list[int]:
    """Meta's reference layout for one turn with a system prompt (BOS as an id, the rest as plain text)."""
    text = f"[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user.strip()} [/INST]"
    return [tok.bos_id, *tok.encode(text)]


def build_prompt(tok: CodeLlamaTokenizer, task: Task, sel: Selection, budget: int,
                 instruction: str | None = None) -> InstructPrompt:
    """The checked prompt for ``task``, at most ``budget`` tokens; a long selection keeps its first lines.

    The surrounding definitions get at most a quarter of the budget (their last lines are kept: the
    enclosing signatures come last).  Raises ``PromptError`` when not even one line fits.
    """
    system = SYSTEM[task]
    instruction = (instruction or "")[:2000]
    sel = _fit_context(tok, sel, budget // 4)
    lines = sel.code.rstrip("\n").split("\n")
    total = len(lines)

    def ids_for(n: int) -> list[int]:
        note = "" if n == total else f" (only its first {n} of {total} lines: the rest did not fit)"
        return encode_turn(tok, system, user_message(task, sel, "\n".join(lines[:n]), instruction, note))

    ids = ids_for(total)
    shown = total
    if len(ids) > budget:
        lo, hi = 0, total - 1  # largest n in [lo, hi] whose prompt fits
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if len(ids_for(mid)) <= budget:
                lo = mid
            else:
                hi = mid - 1
        shown = lo
        if shown == 0:
            raise PromptError(f"the instructTokens budget ({budget} tokens) is too small for even one line "
                              "of the selection")
        ids = ids_for(shown)
    check_prompt(tok, ids)
    note = "" if shown == total else f" (only its first {shown} of {total} lines: the rest did not fit)"
    user = user_message(task, sel, "\n".join(lines[:shown]), instruction, note)
    return InstructPrompt(ids, user, shown, total)


def _fit_context(tok: CodeLlamaTokenizer, sel: Selection, budget: int) -> Selection:
    """Drop the surrounding definitions' first lines until they fit ``budget`` tokens."""
    lines = sel.context.split("\n")
    while lines and sum(tok.count(line) + 1 for line in lines) > budget:
        lines.pop(0)
    return Selection(sel.code, sel.language, sel.file_name, "\n".join(lines), sel.target)


def cut_note(prompt: InstructPrompt, budget: int) -> str:
    """The sentence an answer carries when the model saw only part of the selection."""
    return (f"The selection was cut to fit the `instructTokens` budget ({budget} tokens): the model saw only "
            f"its first {prompt.shown_lines} of {prompt.total_lines} lines.")


# -- answers ---------------------------------------------------------------------------------------
_FENCE_OPEN = re.compile(r"^[ \t]*(`{3,})[^\n`]*$", re.MULTILINE)


def extract_code(answer: str) -> str:
    """The first fenced block's content (to the answer's end if unclosed), else the whole answer."""
    answer = restore(answer.replace("\r\n", "\n"))
    opening = _FENCE_OPEN.search(answer)
    if opening is None:
        return answer.strip("\n")
    body = answer[opening.end() + 1:]
    close = re.search(rf"^[ \t]*{opening.group(1)}`*[ \t]*$", body, re.MULTILINE)
    return (body if close is None else body[:close.start()]).strip("\n")


def dedent(code: str) -> list[str]:
    """Lines of ``code`` without their common leading whitespace; blank lines become empty."""
    lines = [line.rstrip() for line in code.replace("\r\n", "\n").split("\n")]
    indents = [leading_ws(line) for line in lines if line.strip()]
    common = indents[0] if indents else ""
    for ind in indents[1:]:
        while not ind.startswith(common):
            common = common[:-1]
    return [line[len(common):] if line.strip() else "" for line in lines]


def reindent(code: str, line_before: str, indent: str, eol: str = "\n") -> str:
    """``code`` placed where a selection starts: after ``line_before`` (the text left of it on its line).

    Every line gets ``indent`` (the selection's first line's indentation), except the first, which only
    gets what ``line_before`` lacks of it (nothing when the selection starts mid-line, after code).
    """
    lines = dedent(code.strip("\n"))
    if not any(lines):
        return ""
    first_pad = indent[len(line_before):] if not line_before.strip() and indent.startswith(line_before) else ""
    out = [first_pad + lines[0]] + [indent + line if line else "" for line in lines[1:]]
    return eol.join(out)


def docstring_text(answer: str) -> str:
    """The docstring's content from an answer: a triple-quoted string's inside, else the fenced or whole text."""
    text = extract_code(answer)
    quoted = re.search(r'("""|\'\'\')(.*?)(\1|$)', text, re.DOTALL)
    if quoted is not None:
        text = quoted.group(2)
    return inspect.cleandoc(text).strip()  # a docstring's own rule: the first line is not part of the indent


def format_docstring(content: str, indent: str, eol: str = "\n") -> str:
    """A triple-quoted Python docstring of ``content`` at ``indent`` (first line not indented), escaped to parse."""
    body = content.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    if body.endswith('"'):
        body = body[:-1] + '\\"'
    lines = body.split("\n")
    if len(lines) == 1:
        return f'"""{lines[0]}"""'
    rest = [indent + line if line.strip() else "" for line in lines[1:]]
    return eol.join([f'"""{lines[0]}', *rest, f'{indent}"""'])
