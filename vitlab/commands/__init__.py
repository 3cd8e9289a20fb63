"""The ``vitlab`` commands, one module each: ``NAME``, ``add_parser(sub)`` declaring its flags, and ``run(args)``
returning the exit status. ``common`` holds what several share."""

from __future__ import annotations

from vitlab.commands import (
    attention,
    bench,
    calibrate,
    compare,
    evaluate,
    explain,
    export,
    finetune,
    predict,
    report,
    serve,
    train,
)

# In the order of ``vitlab --help``.
COMMANDS = (train, finetune, evaluate, predict, report, attention, explain, calibrate, serve, compare, export, bench)
