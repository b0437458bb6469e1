"""``inspect``: one edit analysed and written as a standalone HTML page (a case study that opens offline).

Same request options as ``edit``; the page (``sss_core.inspect_page``) holds the projection of the
neighbourhood coloured by lambda_max, the probe table with the sparsity fields, the edit prompt's
lambda_max against the new and the old target, and the metrics, with plotly.js inside the file.
"""

from __future__ import annotations

from pathlib import Path

from .common import fail
from .edit import add_request_args, analyse_from_args


def register(sub) -> None:
    """Add ``inspect`` to the CLI's subparsers (torch-free: nothing heavy is imported to parse)."""
    p = sub.add_parser("inspect", help="edit one fact and write what it did as one standalone HTML page")
    add_request_args(p)
    p.add_argument("--html", required=True, type=Path, metavar="OUT.html", help="the page to write")
    p.add_argument("--method", choices=("pca", "umap", "tsne"), default="pca",
                   help="2-D projection of the sentence embeddings (default pca)")
    p.set_defaults(handler=run)


def run(args) -> None:
    """Check the output path, analyse the edit, write the page; print the page's path."""
    if args.html.is_dir():
        fail(f"--html {args.html} is a folder; give the path of the page to write, e.g. {args.html / 'edit.html'}")
    if args.html.parent.exists() and not args.html.parent.is_dir():
        fail(f"--html {args.html}: {args.html.parent} is not a folder")
    _, run_ = analyse_from_args(args)
    from ..inspect_page import write_inspect_page

    path = write_inspect_page(run_, args.html, args.method)
    print(path)
