"""Packaging for crawld: a scrapy-do compatible crawl daemon."""
from setuptools import find_packages, setup

setup(
    name="crawld",
    version="0.1.0",
    description="A crawl daemon: schedules and supervises Scrapy spiders, scrapy-do compatible",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    package_dir={"": "daemon"},
    packages=find_packages("daemon"),
    # the API's OpenAPI description, served as /openapi.json (docs/openapi.yaml links here),
    # and config.example.ini's twin, printed by `crawld config --defaults`; the
    # dashboard's page, scripts and styles, served at / (nothing to build)
    package_data={"crawld": ["openapi.yaml", "defaults.ini"],
                  "crawld.http": ["dashboard/*.html", "dashboard/*.js", "dashboard/*.css",
                                  "dashboard/*.svg"]},
    # Runtime ranges: from the lowest version the suite has run against (constraints.txt)
    # to the next major. Twisted's versions are calendar ones: it is bounded to the next
    # year's release (crawld uses only its public names); docs/operations.md says how the
    # pins move.
    install_requires=[
        "twisted>=26.10,<27",
        "klein>=24.8,<25",
        "scrapy>=2.19,<3",
        "croniter>=7.0,<8",
        "psutil>=7.2,<8",
        "pyyaml>=6.0,<7",  # openapi.yaml, read once and served as /openapi.json
        # job processes show as "crawld: job <id> <project>/<spider>" in ps; the jobs'
        # interpreter may lack it (another venv): they then set only the short name
        "setproctitle>=1.3,<2",
        "multipart>=2.0,<3",  # multipart/form-data bodies (server.py)
        # GET /metrics: Prometheus' exposition format and the process_* collector
        # (metrics.py); 0.x releases: bounded to the next minor, as a 0.x may break
        "prometheus-client>=0.26,<0.27",
        # scrapyd's order of egg versions (PEP 440), eggs.sorted_versions; Scrapy
        # depends on it too, now crawld uses it directly
        "packaging>=26.4,<27",
    ],
    extras_require={
        # browser jobs: Playwright drives Debian's Chromium (never a downloaded browser)
        "browser": ["playwright>=1.65,<2"],
        # [cluster] launcher = celery: jobs run by `crawld worker`s on other hosts; Celery
        # carries only "run attempt N of job J" through a Redis broker (issue 14)
        "cluster": ["celery>=5.7,<6", "redis>=8.1,<9"],
        # Test tools are bounded to the releases known to work together: pytest 9.2
        # broke schemathesis 4.32's pytest plugin (issue 15). constraints.txt pins the
        # whole test environment exactly; these bounds keep an unpinned install close.
        "test": [
            "playwright>=1.65,<1.66",
            "hypothesis>=6.170,<7",
            "openapi-spec-validator>=0.9,<0.10",  # openapi.yaml is valid OpenAPI 3.1
            "schemathesis>=4.32,<4.33",  # fuzzes the live API (test_schemathesis.py)
            "pytest>=9.1,<9.2",
            "pytest-twisted>=1.14,<1.15",
            "treq>=26.7,<27",
            # scrapy-do's own client, scrapy-do-cl, drives the compatibility tests.
            "scrapy-do==0.5.0",
            # scrapyd's own client (scrapyd-deploy, scrapyd-client) against the listener
            "scrapyd-client>=2.0.3,<2.1",
            # python-scrapyd-api (what Gerapy drives scrapyd with) against the listener
            "python-scrapyd-api>=2.1.2,<2.2",
            "requests>=2.34,<3",
            # the dashboard's Firefox test speaks WebDriver BiDi to Debian's firefox-esr
            # over a WebSocket (tests/integration/bidi.py): Playwright cannot drive it
            "websockets>=17.4,<18",
            # the cluster tests (issue 14) run the celery launcher against a real Redis
            "celery>=5.7,<6",
            "redis>=8.1,<9",
        ],
    },
    entry_points={"console_scripts": ["crawld = crawld.cli:main"]},
)
