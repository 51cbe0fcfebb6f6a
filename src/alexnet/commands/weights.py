"""`alexnet weights`: the pretrained weights `--weights` can name, and what given files are."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from alexnet import commands as A
from alexnet.commands import error_line
from alexnet.errors import UserError
from alexnet.weights.hub import CATALOG, CONVERTIBLE, cache_dir


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "weights",
        help="list the pretrained weights --weights can name (and describe weights files)",
        description="Pretrained weights by name (downloaded on first use into torch's hub "
        "cache), weights to convert yourself, and any weights FILE given: source, input size, "
        "classes and top-1 / top-5 error (in percent, ILSVRC-2012 val, centre crop).",
    )
    p.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="weights to describe, each read by its content: a weights file, a training "
        "checkpoint, a run directory or a Hugging Face-style folder",
    )
    A.add_json(p, "print JSON instead of a table")
    p.set_defaults(_light=True)  # without FILEs no torch: the names only
    return p


def _err(value: Any) -> str:
    return "-" if value is None else f"{float(value):.1f}"


def _table(rows: list[dict[str, Any]]) -> str:
    head = ("name", "model", "input", "classes", "top-1 err", "top-5 err", "source / how")
    body = [
        (
            r["name"],
            str(r["model"]),
            str(r["input_size"]),
            str(r["classes"]),
            _err(r["top1_err"]),
            _err(r["top5_err"]),
            f"{r['source']}; {r['how']}",
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(head[:-1])]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1] for row in (head, *body)
    )


def run(args: argparse.Namespace) -> int:
    named = []
    for entry in CATALOG.values():
        cached = cache_dir() / entry["file_name"]
        row = {**entry, "cached": str(cached) if cached.is_file() else None}
        if row["cached"]:
            row["how"] = f"cached: {cached}"
        named.append(row)
    convertible = list(CONVERTIBLE.values())
    files, unreadable = [], []
    for name in args.files:
        from alexnet.weights.files import describe_file  # torch: only when a file is described

        try:
            files.append(describe_file(name))
        except UserError as exc:  # one line for this file; the listing goes on
            print(f"alexnet weights: error: {error_line(exc)}", file=sys.stderr)
            unreadable.append({"name": name, "error": error_line(exc)})
    status = 2 if unreadable else 0
    if args.json:
        out = {"named": named, "convertible": convertible, "files": files}
        print(json.dumps({**out, "unreadable": unreadable} if unreadable else out, indent=2))
        return status
    print("By name (--weights NAME):")
    print(_table(named))
    print("\nConvert yourself:")
    print(_table(convertible))
    if files:
        print("\nFiles:")
        print(_table(files))
    return status
