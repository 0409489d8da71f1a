"""The typed seams between crawld's services: what each one needs of another.

A service's constructor takes these protocols, not concrete classes, so a unit test can
hand it a fake, and tests/unit/test_seams.py checks that the real classes and the fakes
still have every member with the same parameters (a fake that drifts from the real class
fails there, not silently in a test that passes for the wrong reason). The launcher's
protocol lives with the launchers (launch/protocol.py); the HTTP layer declares what its
routes use in http/.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Protocol, Sequence

from twisted.internet.defer import Deferred

from .model import Job, JobStatus, Project, Version


class Clock(Protocol):
    """The reactor as a clock (``twisted.internet.task.Clock`` in tests)."""

    def seconds(self) -> float:
        """Now, in seconds since the epoch."""

    def callLater(self, delay: float, callable: Callable[..., Any], *args: Any,
                  **kw: Any) -> Any:
        """Call ``callable`` after ``delay`` seconds; returns an IDelayedCall."""


class EventSink(Protocol):
    """Where services publish job changes (events.JobEvents)."""

    def publish(self, job: Job) -> None:
        """``job`` changed; it is the new state."""


class EventSource(Protocol):
    """Where job changes come from (events.JobEvents): observers subscribe."""

    def subscribe(self, observer: Callable[[Job], None]) -> Callable[[], None]:
        """Call ``observer(job)`` at every change from now on; returns an unsubscribe."""


class JobStore(Protocol):
    """The jobs' side of the store (store.Store), each call a Deferred."""

    def get_job(self, job_id: str) -> "Deferred[Optional[Job]]":
        """The job, or None."""

    def list_jobs(self, statuses: Sequence[JobStatus], limit: int = -1, offset: int = 0,
                  project: Optional[str] = None, spider: Optional[str] = None
                  ) -> "Deferred[list[Job]]":
        """Jobs in any of ``statuses``, most recently changed first."""

    def add_job(self, job: Job) -> "Deferred[Job]":
        """Insert a job; fires with it and its sequence number."""

    def transition(self, job_id: str, allowed: Sequence[JobStatus], status: JobStatus,
                   now: float, **fields: Any) -> "Deferred[Optional[Job]]":
        """Compare and set: move the job to ``status`` if it is in ``allowed``."""

    def unstart(self, job_id: str, now: float) -> "Deferred[None]":
        """Undo a RUNNING transition for a job that never ran."""

    def update_job(self, job_id: str, **fields: Any) -> "Deferred[None]":
        """Set fields without changing the status."""

    def set_stats(self, job_id: str, stats: str) -> "Deferred[Optional[Job]]":
        """Record a RUNNING job's latest stats (JSON text); fires with the job, or None
        when it no longer runs."""


class ProjectCatalog(Protocol):
    """The pushed projects as the jobs service reads them (projects.Projects)."""

    def get(self, name: str) -> Project:
        """The project (NotFound or Conflict when it cannot be used)."""

    def path(self, name: str) -> Optional[str]:
        """The directory of the project's current version, or None."""

    def script_path(self, name: str, script: str) -> str:
        """The file of a browser script of project ``name``."""

    def get_version(self, name: str, version: str) -> Version:
        """A stored version of project ``name`` (NotFound when there is none)."""


class BrowserRunner(Protocol):
    """What the local launcher needs to run browser jobs (browser.Browsers)."""

    channels: Mapping[str, Any]

    def files_dir(self, job_id: str) -> str:
        """Where the job's artifacts go (a browse job's working directory)."""

    def command(self, job: Job, cwd: Optional[str], script: Optional[str],
                base_env: Mapping[str, str]) -> Any:
        """The runner's Command for the job."""

    def spawn(self, cmd: Any, job_id: str) -> Deferred:
        """Start the runner; fires with a Spawned (pid, ended)."""

    def ended(self, job_id: str) -> Deferred:
        """The job ended: keep its unread posts, remove its temporary directory."""


class Spawner(Protocol):
    """Starts spider processes (spawner.DirectSpawner, spawner.ZygoteSpawner)."""

    def spawn(self, cmd: Any, log_dir: str, job_id: str) -> Deferred:
        """Start ``cmd`` with the job's log files; fires with a Spawned (pid, ended)."""

    def stop(self) -> "Deferred[None]":
        """Release what the spawner holds (the zygote)."""

    def up(self) -> bool:
        """Whether a zygote is ready to fork jobs (False for direct spawns)."""

