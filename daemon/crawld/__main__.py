"""``python -m crawld serve ...``"""
import sys

from .cli import main

sys.exit(main())
