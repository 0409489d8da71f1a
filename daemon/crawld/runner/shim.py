"""A browser job's shim: the process the daemon starts, which outlives, kills and reaps
everything below it (stdlib only; the runner it forks imports Playwright).

The daemon starts it as ``python -c BOOTSTRAP <runner dir> shim`` (``runner.argv``) in
the jobs' interpreter, with the job described by its environment (see browser.py). It
calls itself ``crawld: job <id> <project>/<script>`` (a browse job: ``... browse``), and
the runner it forks adds `` (runner)``.

Process shape. Playwright's driver starts Chromium in a session of its own, so killing
the job's process group does not reach a wedged browser. The shim therefore makes
itself a session leader and a child subreaper, then forks before Playwright is imported:

    shim (this pid; subreaper)        waits; on SIGTERM/SIGINT stops the runner, then
     `- runner                        SIGKILLs every descendant, reaps them, removes
         `- node (Playwright driver)  CRAWLD_TMP. Orphans re-parent to the shim, so
             `- chromium ...          "descendant" is always the ppid chain from here.

Exit status of the shim (what the daemon sees):
    0        the script returned (the browse job succeeded)
    1        the script raised, the browser failed to start, or browsing failed
    2        the job could not be started as given: unreadable script, no async
             ``run``, an exception while importing the script, bad CRAWLD_* JSON, or
             Playwright missing
    n        the script called ``sys.exit(n)``
    128+s    the runner died of signal s, or the shim was stopped by signal s (SIGTERM:
             143, SIGINT: 130) before the runner had finished; the runner itself exits
             143 when it honours a stop request
A stop signal that arrives after the runner has ended does not change the status.

Chromium puts its singleton socket in $TMPDIR/org.chromium.Chromium.XXXXXX/, and a Unix
socket path is limited to 107 bytes: with a long CRAWLD_TMP, Chromium aborts ("Socket
path too long"). The shim then makes a short symlink to CRAWLD_TMP in /tmp, named
/tmp/crawld-<first 10 hex digits of sha256(CRAWLD_TMP)>, and Chromium alone gets that as
its TMPDIR; the files stay in CRAWLD_TMP. The shim removes it at the end; should a shim
be SIGKILLed, the next one removes such links left dangling.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import sys
import tempfile
import traceback
from typing import Any, Optional

from . import browser, proc
from .browser import ALIAS_ENV, EXIT_FAILED, STOP_SIGNALS
from .proc import note
from .reaper import Reaper

MAX_BROWSER_TMPDIR = 60  # longer TMPDIRs get a short alias for Chromium (see above)


class Shim(Reaper):
    """Waits for the runner; on a stop request or at the end, clears the whole tree
    (the sweeping is reaper.py's, shared with a spider job's keeper)."""

    WATCHED = {signal.SIGCHLD, *STOP_SIGNALS}

    def __init__(self, runner: int, tmp: str, alias: Optional[str], grace: float) -> None:
        super().__init__(runner, self.WATCHED, "crawld-browser")
        self.tmp = tmp
        self.alias = alias
        self.grace = grace

    def remove_tmp(self) -> None:
        """Delete CRAWLD_TMP (profile, Playwright artifacts, Chromium's temp files)."""
        if self.alias:
            try:
                os.unlink(self.alias)
            except FileNotFoundError:
                pass
            except OSError as exc:
                note(f"cannot remove {self.alias}: {exc}")

        def complain(_function: Any, path: str, exc_info: Any) -> None:
            if not isinstance(exc_info[1], FileNotFoundError):
                note(f"cannot remove {path}: {exc_info[1]}")

        shutil.rmtree(self.tmp, onerror=complain)

    def run(self) -> int:
        """The shim's whole life; returns its exit status (see the module docstring)."""
        stop = self.wait(self.child_done, None)
        if stop is None:
            code = proc.exit_code(self.child_status)
            self.sweep(f"the runner ended with status {code}")
        else:
            code = 128 + stop.si_signo
            note(f"stopping on signal {stop.si_signo}: SIGTERM to the runner, "
                 f"{self.grace:g} s of grace")
            try:
                os.kill(self.child, signal.SIGTERM)
            except ProcessLookupError:
                pass
            if self.wait(self.child_done, self.grace) is None and not self.child_done():
                note(f"the runner did not end within {self.grace:g} s")
            self.kill_all()
        self.remove_tmp()
        return code


ALIAS_NAME = re.compile(r"crawld-[0-9a-f]{10}")


def sweep_aliases(base: str) -> None:
    """Remove our dangling alias links in ``base`` (left by shims that were killed)."""
    try:
        names = [n for n in os.listdir(base) if ALIAS_NAME.fullmatch(n)]
    except OSError:
        return
    for name in names:
        path = os.path.join(base, name)
        try:
            if (os.path.islink(path) and os.lstat(path).st_uid == os.geteuid()
                    and not os.path.exists(path)):
                os.unlink(path)
        except OSError:
            pass


def short_alias(tmp: str) -> Optional[str]:
    """A short symlink to ``tmp`` for Chromium's TMPDIR when ``tmp`` is too long.

    Its name derives from ``tmp`` (a daemon can find it); ``tmp`` must exist already,
    so that a link is dangling only once its job is over.
    """
    if len(os.fsencode(tmp)) <= MAX_BROWSER_TMPDIR:
        return None
    base = "/tmp" if os.access("/tmp", os.W_OK | os.X_OK) else tempfile.gettempdir()
    sweep_aliases(base)
    digest = hashlib.sha256(os.fsencode(tmp)).hexdigest()
    for attempt in range(100):
        suffix = digest[:10] if attempt == 0 else os.urandom(5).hex()
        alias = os.path.join(base, f"crawld-{suffix}")
        try:
            os.symlink(tmp, alias)
            return alias
        except FileExistsError:
            try:
                if os.readlink(alias) == tmp:
                    return alias
            except OSError:
                pass
        except OSError as exc:
            note(f"cannot make a short alias for {tmp}: {exc}")
            return None
    return None


def main() -> None:
    """Become a session leader and subreaper, fork the runner, and shim for it."""
    original_mask = signal.pthread_sigmask(signal.SIG_BLOCK, Shim.WATCHED)
    title = proc.job_title(os.environ)
    proc.set_title(title)
    try:
        os.setsid()
    except OSError:
        pass  # already a session leader (the daemon used start_new_session)
    if not proc.prctl(proc.PR_SET_CHILD_SUBREAPER, 1):
        note("cannot become a child subreaper; orphans may escape the cleanup")
    tmp = os.environ.get("CRAWLD_TMP") or tempfile.mkdtemp(prefix="crawld-browser-")
    os.environ["CRAWLD_TMP"] = tmp = os.path.abspath(tmp)
    os.makedirs(tmp, mode=0o700, exist_ok=True)
    alias = short_alias(tmp)
    os.environ.pop(ALIAS_ENV, None)
    if alias:
        os.environ[ALIAS_ENV] = alias
    try:
        grace = max(0.0, float(os.environ.get("CRAWLD_KILL_GRACE") or 5))
    except ValueError:
        grace = 5.0
    shim_pid = os.getpid()
    sys.stdout.flush()
    sys.stderr.flush()
    runner = os.fork()
    if runner == 0:
        code = EXIT_FAILED
        try:
            signal.pthread_sigmask(signal.SIG_SETMASK, original_mask)
            proc.prctl(proc.PR_SET_PDEATHSIG, signal.SIGKILL)  # the shim SIGKILLed: follow
            if os.getppid() != shim_pid:
                os._exit(EXIT_FAILED)
            proc.set_title(title and title + " (runner)")
            code = browser.runner_main()
        except BaseException:
            traceback.print_exc()
        finally:
            proc.exit_now(code)
    for name in ("CRAWLD_CONTROL_OUT", "CRAWLD_CONTROL_IN"):
        try:
            fd = browser.env_fd(name)
            if fd is not None:
                os.close(fd)
        except (OSError, ValueError):
            pass
    sys.exit(Shim(runner, tmp, alias, grace).run())
