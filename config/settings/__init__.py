"""Settings package. `DJANGO_SETTINGS_MODULE=config.settings` (the default) means base.py, whose mode
VERITY_MODE selects; test.py and production.py set their defaults before importing base.py.

base.py is imported here only when this package itself is the settings module: importing it eagerly
would evaluate it before test.py / production.py had set their environment defaults.
"""

import os

if os.environ.get("DJANGO_SETTINGS_MODULE", "config.settings") == "config.settings":
    from config.settings.base import *  # noqa: F401,F403
