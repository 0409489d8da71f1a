"""A real Scrapy project that the integration tests build, zip and push.

Spiders: ``ok`` (reports its environment and settings; ``pid`` is Scrapy's process,
``ppid`` the job's keeper, see runner/keeper.py), ``fail`` (exit code 3),
``sleep`` (runs until ended; starts a grandchild in its group and one in a session of
its own), ``stubborn`` (ignores SIGTERM), ``flood`` (writes many MB to stdout), ``hog``
(a helper in its own session holds many MB of memory).
"""
from __future__ import annotations

import io
import os
import zipfile

SCRAPY_CFG = """[settings]
default = {name}.settings

[deploy]
project = {name}
"""

SETTINGS = """BOT_NAME = "{name}"
SPIDER_MODULES = ["{name}.spiders"]
LOG_LEVEL = "INFO"
"""

SPIDERS = r'''
import asyncio, json, os, signal, subprocess, sys
import scrapy


def say(**kw):
    print("CRAWLD-TEST " + json.dumps(kw), flush=True)


class Ok(scrapy.Spider):
    name = "ok"

    async def start(self):
        s = self.crawler.settings
        say(job=os.environ.get("CRAWLD_JOB_ID"), project=os.environ.get("CRAWLD_PROJECT"),
            spider=os.environ.get("CRAWLD_SPIDER"), payload=getattr(self, "payload", None),
            telnet=s.getbool("TELNETCONSOLE_ENABLED"),
            remote=s.getbool("REMOTE_CONTROL_ENABLED"), pid=os.getpid(), ppid=os.getppid(),
            sid=os.getsid(0), marker=os.environ.get("CRAWLD_TEST_MARKER"),
            uid=os.getuid(), gid=os.getgid(), home=os.environ.get("HOME"))
        return
        yield


class Fail(scrapy.Spider):
    name = "fail"

    async def start(self):
        print("about to fail", file=sys.stderr, flush=True)
        os._exit(3)
        yield


class Sleep(scrapy.Spider):
    name = "sleep"

    async def start(self):
        grp = subprocess.Popen(["sleep", "300"])
        own = subprocess.Popen(["sleep", "301"], start_new_session=True)
        say(pid=os.getpid(), ppid=os.getppid(), group_child=grp.pid, session_child=own.pid)
        await asyncio.sleep(300)
        return
        yield


class Stubborn(scrapy.Spider):
    name = "stubborn"

    async def start(self):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        say(pid=os.getpid(), ppid=os.getppid())
        await asyncio.sleep(300)
        return
        yield


class Hog(scrapy.Spider):
    """Starts a helper in a session of its own that holds ``megabytes`` of memory."""

    name = "hog"

    async def start(self):
        wanted = json.loads(getattr(self, "payload", "{}")).get("megabytes", 300)
        code = ("import sys, time; b = bytearray(%d * 1024 * 1024); "
                "b[::4096] = b'x' * len(b[::4096]); print('held', flush=True); "
                "time.sleep(300)" % wanted)
        child = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
        say(pid=os.getpid(), hog=child.pid)
        await asyncio.sleep(300)
        return
        yield


class Flood(scrapy.Spider):
    name = "flood"

    async def start(self):
        line = "x" * 1023 + "\n"
        block = line * 1024
        wanted = json.loads(getattr(self, "payload", "{}")).get("megabytes", 40)
        for _ in range(int(wanted)):
            sys.stdout.write(block)
        sys.stdout.flush()
        return
        yield
'''

SPIDER_NAMES = ["fail", "flood", "hog", "ok", "sleep", "stubborn"]


def build(name: str = "demo", spiders: str = SPIDERS, extra: dict[str, str] | None = None,
          settings: str = SETTINGS) -> bytes:
    """The project as scrapy-do-cl would zip it: ``<name>/scrapy.cfg``, ``<name>/<name>/..``."""
    files = {
        "scrapy.cfg": SCRAPY_CFG.format(name=name),
        f"{name}/__init__.py": "",
        f"{name}/settings.py": settings.format(name=name),
        f"{name}/spiders/__init__.py": "",
        f"{name}/spiders/test_spiders.py": spiders,
        **(extra or {}),
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, text in files.items():
            zf.writestr(f"{name}/{path}", text)
    return buf.getvalue()


def write_tree(root: str, name: str = "demo") -> str:
    """Write the project as a directory (for scrapy-do-cl push-project); returns its path."""
    data = build(name)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        zf.extractall(root)
    return os.path.join(root, name)
