"""The browser fixtures, registered once for every test module of this folder.

Importing them into each test module instead would make pytest build the session-scoped ones
once per module: a second Playwright sync session inside the first one's event loop is refused.
"""

from browser_support import browser, chromium_path, new_page, server  # noqa: F401 (fixtures)
