import os

from hypothesis import settings

settings.register_profile("default", max_examples=25, deadline=None, derandomize=True)
settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") == "true" else "default")
