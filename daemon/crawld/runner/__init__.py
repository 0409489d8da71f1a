"""Code that runs in the jobs' interpreter, never in the daemon: no crawld import.

Every module here runs from its own source in any interpreter that has Scrapy (the
zygote, a spider job) or Playwright (a browser job's shim and runner); crawld need not be
importable there. The modules import only the standard library, each other (relative
imports) and, inside functions, Scrapy, Playwright and the optional ``setproctitle``.

The daemon starts one of them as ``python -c BOOTSTRAP <this directory> <module> args...``
(see ``argv``). BOOTSTRAP loads this directory as the package ``crawld_runner``, a name
no project uses, and calls ``<module>.main()`` with ``sys.argv == ['-c', *args]``, as
``python -c`` would have it. sys.path is not touched (sys.path[0] stays '', the job's
working directory, exactly as for ``scrapy crawl``), and each module is imported from its
path rather than run as ``__main__``, so its bytecode is cached in ``__pycache__`` (a
``__main__`` script is compiled at every start: 13 ms for the browser runner).
"""
import os

#: This directory: the installed package's ``crawld/runner``.
DIR = os.path.dirname(os.path.abspath(__file__))

#: ``python -c`` code: import ``crawld_runner.<argv[2]>`` from the directory in argv[1]
#: and call its ``main()``; both arguments are removed from sys.argv first.
BOOTSTRAP = (
    "import importlib, importlib.util as u, sys; d = sys.argv.pop(1); "
    "s = u.spec_from_file_location('crawld_runner', d + '/__init__.py', "
    "submodule_search_locations=[d]); p = u.module_from_spec(s); "
    "sys.modules[s.name] = p; s.loader.exec_module(p); "
    "importlib.import_module('crawld_runner.' + sys.argv.pop(1)).main()")


def argv(python: str, module: str, *args: str) -> tuple[str, ...]:
    """The command line that runs ``<module>.main()`` of this package in ``python``."""
    return (python, "-c", BOOTSTRAP, DIR, module, *args)
