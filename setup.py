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
    # the API's OpenAPI description, served as /openapi.json (docs/openapi.yaml links here)
    package_data={"crawld": ["openapi.yaml"]},
    install_requires=[
        "twisted>=23.10",
        "klein>=23.5",
        "scrapy>=2.11",
        "croniter>=2.0",
        "psutil>=5.9",
        "pyyaml>=6.0",  # openapi.yaml, read once and served as /openapi.json
    ],
    extras_require={
        # browser jobs: Playwright drives Debian's Chromium (never a downloaded browser)
        "browser": ["playwright>=1.40"],
        "test": [
            "playwright>=1.40",
            "hypothesis>=6",
            "openapi-spec-validator>=0.7",  # openapi.yaml is a valid OpenAPI 3.1 document
            "schemathesis>=4.32,<5",  # fuzzes the live API (tests/integration/test_schemathesis.py)
            "pytest>=8",
            "pytest-twisted>=1.14",
            "treq>=23.11",
            # scrapy-do's own client, scrapy-do-cl, drives the compatibility tests.
            "scrapy-do==0.5.0",
            "requests",
        ],
    },
    entry_points={"console_scripts": ["crawld = crawld.cli:main"]},
)
