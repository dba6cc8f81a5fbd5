"""``labelkit <command> …``: one console script for every command Labelkit has.

Each command is a module's own ``python -m`` entry point, run as if it had been started
that way (so ``labelkit listener --workers 2`` is ``python -m sqs_listener --workers 2``,
and the ``python -m`` forms keep working). The modules are run by name, not imported
here: the core never imports an entry point (see the import contracts in pyproject.toml).
"""

from __future__ import annotations

import runpy
import sys

#: command -> (module run as ``__main__``, what it does)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("labelkit.run", "start the whole product locally (dashboard + worker)"),
    "listener": ("sqs_listener", "the long-polling worker over the local queue or SQS"),
    "label": ("labelkit.label", "label image files with the configured labeller (Rekognition-shaped JSON)"),
    "upload": ("labelkit.upload", "import photos from folders, files or an S3 prefix, resumably"),
    "learn": ("labelkit.learn", "learn each person's taught labels from their own labels, now"),
    "people": ("labelkit.people_cli", "list a person's people (faces grouped), name them, re-cluster"),
    "export": ("labelkit.interchange", "export labels (CSV, JSON Lines, COCO, manifest) or import them"),
    "demo": ("labelkit.demo", "upload the photos shipped in scikit-image/scikit-learn as a demo account"),
    "search": ("labelkit.search", 'search the photos: "puppy", "dog -cat", "dog | cat"'),
    "relabel": ("labelkit.relabel", "relabel images labelled by another model configuration"),
    "counts": ("labelkit.db.counts", "check or rebuild the running totals"),
    "model": ("labelkit.labelers.build", "build the local models' ONNX files (needs requirements-model.txt)"),
    "infra": ("infra_scripts", "AWS: plan, apply, destroy, outputs, migrate, render"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: labelkit <command> [arguments]", "", "commands:"]
    lines += [f"  {name:<{width}}  {what}" for name, (_, what) in COMMANDS.items()]
    lines += ["", "`labelkit <command> --help` shows a command's own arguments."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"labelkit: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = COMMANDS[command][0]
    sys.argv = [f"labelkit {command}", *rest]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as e:
        code = e.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
