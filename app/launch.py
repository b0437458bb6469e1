"""``sss-lab-app``: start the browser app from any folder, installed or in a clone.

It runs ``streamlit run streamlit_app.py`` on the router that sits beside this package (in a clone:
the repository root; installed: site-packages) with the project's Streamlit settings. Streamlit
reads ``.streamlit/config.toml`` only from the current folder (and, in recent versions, the
router's), so an installed app started elsewhere gets those settings as flags instead:
``STREAMLIT_SETTINGS`` below, kept equal to ``.streamlit/config.toml`` by tests/app/test_launch.py.
Arguments after the command go to ``streamlit run`` and win over these settings.

Example:
    $ sss-lab-app                        # http://localhost:8501
    $ sss-lab-app --server.port 8600     # another port
    $ sss-lab-app --server.address 0.0.0.0   # a class: see docs/app.md, "Serve a class"
"""

from __future__ import annotations

import sys
import threading
from importlib import resources
from pathlib import Path

ROUTER = "streamlit_app.py"  # the entry file; its st.Page paths ("app/views/...") are relative to its folder

# .streamlit/config.toml as "section.key" -> value. The app listens on this machine only; to share it
# on a network pass --server.address 0.0.0.0 explicitly (there is no authentication).
STREAMLIT_SETTINGS: dict[str, object] = {
    "server.address": "localhost",
    "server.port": 8501,
    "server.headless": True,
    "server.runOnSave": False,
    "server.fileWatcherType": "none",  # an installed app's sources do not change; watching them costs CPU
    "server.maxUploadSize": 50,  # MB
    "browser.gatherUsageStats": False,
    "browser.serverAddress": "localhost",
    "client.showErrorDetails": "none",  # errors are shown as messages by the app, never a traceback
    "client.toolbarMode": "minimal",
    "logger.level": "info",
}


def router_path() -> Path:
    """The app's entry file, ``streamlit_app.py``, found beside the installed ``app`` package.

    Raises:
        FileNotFoundError: the entry file is not beside the package (a broken install); reinstall
            with ``pip install sss-lab`` (or ``pip install -e .`` in a clone).
    """
    package_dir = resources.files("app")
    if not isinstance(package_dir, Path):
        raise FileNotFoundError(f"the app package is not on disk ({package_dir!r}): install it with pip")
    router = package_dir.parent / ROUTER
    if not router.is_file():
        raise FileNotFoundError(f"{router} is missing: the app needs {ROUTER} beside its app/ package; "
                                "reinstall with pip install sss-lab (or pip install -e . in a clone)")
    return router


def streamlit_args(extra: list[str]) -> list[str]:
    """``streamlit``'s arguments: ``run``, the router, the project's settings as flags, then ``extra``.

    Example:
        >>> streamlit_args(["--server.port", "8600"])[-2:]
        ['--server.port', '8600']
    """
    flags: list[str] = []
    for key, value in STREAMLIT_SETTINGS.items():
        flags += [f"--{key}", str(value).lower() if isinstance(value, bool) else str(value)]
    return ["run", str(router_path()), *flags, *extra]


def address_of(args: list[str]) -> str | None:
    """The ``--server.address`` the arguments give (the last one wins; ``--server.address=X`` too)."""
    address = None
    for i, arg in enumerate(args):
        if arg == "--server.address" and i + 1 < len(args):
            address = args[i + 1]
        elif arg.startswith("--server.address="):
            address = arg.split("=", 1)[1]
    return address


def _preload() -> None:
    """Import the editing core, load the default model and start its warm-up while the server starts.

    Runs in a background thread of the launcher: the first page then finds the modules imported and
    the model in ``resources``' process-wide cache (a session asking for it meanwhile waits for this
    load instead of starting its own). A failure is only logged: the page loads and reports it itself.
    """
    try:
        from app import panels, resources  # noqa: F401 - panels: the first page's modules before the model's
        resources.get_model("default")
        resources.prewarm("default")
    except Exception as exc:  # noqa: BLE001 - the page shows a load failure with its reason
        print(f"sss-lab-app: the default model was not preloaded ({exc}); the first page loads it", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run the app in this process until it is stopped (Ctrl+C); returns streamlit's exit status.

    Served beyond this machine, it first prints what the server protects and what it does not
    (``serving.served_summary``). The default model is loaded in the background meanwhile (``_preload``).
    """
    from streamlit.web import cli as streamlit_cli  # here: importing streamlit starts its config machinery

    from app import serving

    args = streamlit_args(sys.argv[1:] if argv is None else argv)
    summary = serving.served_summary(address_of(args))
    if summary:
        print(summary, file=sys.stderr)
    threading.Thread(target=_preload, name="model-preload", daemon=True).start()
    try:
        streamlit_cli.main(args=args, prog_name="streamlit", standalone_mode=True)
    except SystemExit as exc:  # click ends with SystemExit(code) in standalone mode
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
