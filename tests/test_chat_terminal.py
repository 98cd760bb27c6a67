"""`tokenmill chat` in a real terminal: tmux runs it in a pane of fixed size, the test types with
send-keys (line editing included) and reads the screen with capture-pane, waiting for each `you> `."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.chat_data import greedy_reply, write_chat_checkpoint

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux"),
]

TOKENMILL = Path(sys.executable).parent / "tokenmill"
SYSTEM = "Be brief."


def exit_status(screen: list[str]) -> int | None:
    """The command's exit status once the shell has printed it, else None."""
    ended = [line for line in screen if line.startswith("[exit status ")]
    return int(ended[0].removeprefix("[exit status ").rstrip("]")) if ended else None


def last_lines(screen: list[str]) -> list[str]:
    """The command's last line and the exit status line after it (tmux's "Pane is dead" left out)."""
    end = next(index for index, line in enumerate(screen) if line.startswith("[exit status "))
    return screen[end - 1 : end + 1]


def prompts(screen: list[str]) -> int:
    return sum(line.startswith("you>") for line in screen)


class Pane:
    """One tmux session on a private server socket, running one command in a 120x40 pane. The shell
    that runs it then prints its exit status (tmux itself may never learn it: a process that used
    readline can stay an unreaped zombie of the tmux server), and the pane stays on screen."""

    def __init__(self, socket: Path, command: list[str]) -> None:
        self.socket = socket
        shell = f'{shlex.join(command)}; echo "[exit status $?]"'
        size = ("-x", "120", "-y", "40")
        self.tmux("new-session", "-d", *size, "-s", "chat", shell, ";", "set-option", "remain-on-exit", "on")

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-S", str(self.socket), *args], capture_output=True, text=True, check=True
        )
        return done.stdout

    def lines(self) -> list[str]:
        """The screen's lines (a line wrapped at the pane's width is one line), trailing blanks left out."""
        screen = self.tmux("capture-pane", "-p", "-J", "-t", "chat")
        return [line.rstrip() for line in screen.rstrip().splitlines()]

    def wait(self, condition: Callable[[list[str]], bool], what: str) -> list[str]:
        """Poll the screen until `condition` holds for it, and return it; fail with the screen if the
        command ends first or a minute passes."""
        deadline = time.monotonic() + 60
        while not condition(screen := self.lines()):
            if exit_status(screen) is not None or time.monotonic() > deadline:
                ended = "the chat ended" if exit_status(screen) is not None else "timed out"
                pytest.fail(f"{ended} before {what}:\n" + "\n".join(screen))
            time.sleep(0.05)
        return screen

    def type(self, *keys: str) -> None:
        """Send keys (tmux key names such as Enter or C-a), then wait for the next `you> `."""
        before = prompts(self.lines())
        self.tmux("send-keys", "-t", "chat", *keys)
        self.wait(
            lambda screen: prompts(screen) > before and screen[-1] == "you>", f"the prompt after {keys}"
        )

    def end(self, *keys: str) -> list[str]:
        """Send keys that end the command; the screen once it has."""
        self.tmux("send-keys", "-t", "chat", *keys)
        return self.wait(lambda screen: exit_status(screen) is not None, f"the end after {keys}")

    def close(self) -> None:
        subprocess.run(["tmux", "-S", str(self.socket), "kill-server"], capture_output=True)


@pytest.fixture()
def chat_pane(tmp_path: Path):
    run_dir = write_chat_checkpoint(tmp_path / "run")
    options = ["--temperature", "0", "--max-new-tokens", "4", "--system", SYSTEM]
    pane = Pane(tmp_path / "tmux.sock", [str(TOKENMILL), "chat", "--checkpoint", str(run_dir), *options])
    try:
        pane.wait(lambda screen: screen[-1:] == ["you>"], "the first prompt")
        yield pane, run_dir
    finally:
        pane.close()


def test_a_chat_in_a_terminal_replies_resets_and_quits(chat_pane) -> None:
    pane, run_dir = chat_pane
    assert pane.lines()[0] == (
        f"tokenmill chat: {run_dir} (6.5M parameters, 64 tokens of context, cpu); "
        "/reset starts over, /quit or Ctrl-D ends"
    )
    reply = greedy_reply(
        run_dir, [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Hi"}], 4
    )
    pane.type("i", "C-a", "H", "Enter")  # readline's line editing: Ctrl-A goes back to the start
    pane.type("/reset", "Enter")
    pane.type("Hi", "Enter")
    assert pane.lines()[1:] == [
        "you> Hi",
        f"assistant> {reply}",
        "you> /reset",
        "(the conversation starts over)",
        "you> Hi",
        f"assistant> {reply}",
        "you>",
    ]
    assert last_lines(pane.end("/quit", "Enter")) == ["you> /quit", "[exit status 0]"]


def test_ctrl_d_ends_the_chat(chat_pane) -> None:
    pane, _ = chat_pane
    assert last_lines(pane.end("C-d")) == ["you>", "[exit status 0]"]
