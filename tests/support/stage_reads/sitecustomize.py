"""Records the files and folders a stage's processes open or list (tests/e2e/test_pipeline.py).

Put this folder on PYTHONPATH and name a folder in GENRECLF_TEST_READS_LOG: every Python
process started so (DVC's stage commands and the processes they fork) then appends to
``<folder>/<pid>.txt``, once per path: a first line with the process's command (``stages.X
args``, the module that ``python -m`` runs), then each path it opened or listed, relative to
the folder the process started in. It writes nothing into that folder, so no output changes;
without the variable it does nothing. A test-only tool: the project's code never imports it.
"""

import os
import sys

_LOG = os.environ.get("GENRECLF_TEST_READS_LOG")
# Python's own, and the one genreclf.data.audio raises for what libsndfile opens (AUDIO_OPEN_EVENT)
_EVENTS = {"open", "os.listdir", "os.scandir", "genreclf.audio.open"}


def _install(log_folder: str) -> None:
    start = os.getcwd()
    state = {"pid": None, "fd": None, "seen": set(), "busy": False}

    def command() -> str:
        """``stages.X args`` of the nearest process up the tree that ran ``python -m stages.X args``
        (a forked or spawned worker is charged to its stage), else this process's command line."""
        pid, own = os.getpid(), None
        for _ in range(4):  # the process, its parent (a pool's), and theirs (a forkserver's)
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:  # not sys.argv: runpy sets it after the first reads
                    argv = [os.fsdecode(arg) for arg in f.read().split(b"\0") if arg]
                with open(f"/proc/{pid}/stat", "rb") as f:
                    pid = int(f.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                break
            own = own or argv
            if "-m" in argv:
                return " ".join(argv[argv.index("-m") + 1 :])
        return " ".join(own or sys.argv)

    def hook(event, args):
        if event not in _EVENTS or state["busy"] or not args or not isinstance(args[0], (str, bytes, os.PathLike)):
            return
        state["busy"] = True
        try:
            path = os.fsdecode(args[0])
            full = os.path.abspath(path)
            if not full.startswith(start + os.sep):
                return
            if state["pid"] != os.getpid():  # a new process (forked): its own file, its own set
                state.update(pid=os.getpid(), seen=set())
                state["fd"] = os.open(
                    os.path.join(log_folder, f"{os.getpid()}.txt"), os.O_WRONLY | os.O_CREAT | os.O_APPEND
                )
                os.write(state["fd"], (command() + "\n").encode())
            relative = os.path.relpath(full, start)
            if relative not in state["seen"]:
                state["seen"].add(relative)
                os.write(state["fd"], (relative + "\n").encode())
        except Exception:
            pass
        finally:
            state["busy"] = False

    sys.addaudithook(hook)


if _LOG:
    _install(_LOG)
