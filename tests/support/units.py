"""Run what a rendered systemd unit says, the way systemd would, where there is no systemd (the integration tests):
its ``ExecStart`` as an argument list, its ``ExecStartPre`` commands, and ``LoadCredential=`` copies."""

import pathlib
import re
import shlex
import subprocess

# systemd's credentials directory of a system unit: /run/credentials/<unit> (%d)
CREDENTIALS = "/run/credentials"


def _commands(unit_text, key):
    bodies = re.findall(rf"^{key}=(.*?)(?:\n(?!  )|\Z)", unit_text, re.S | re.M)
    return [shlex.split(body.replace("\\\n", " ")) for body in bodies]


def exec_start(unit_text):
    """The unit's ``ExecStart=`` as an argument list (systemd's quoting and line continuations undone)."""
    return _commands(unit_text, "ExecStart")[0]


def run_exec_start_pre(unit_text):
    """Run every ``ExecStartPre=`` command of the unit, in order (this process's privileges: the tests run as
    root, as a ``+`` command does); a failing one fails unless it has systemd's ``-`` prefix."""
    for argv in _commands(unit_text, "ExecStartPre"):
        program = argv[0]
        optional = "-" in program[: len(program) - len(program.lstrip("+-@!:"))]
        subprocess.run([program.lstrip("+-@!:"), *argv[1:]], check=not optional)


def with_credentials(argv, unit_text, unit, directory):
    """What systemd does for ``LoadCredential=name:path``: copy each path to ``<directory>/name``, for the service
    alone; the unit's ``%d`` (``/run/credentials/<unit>``) then points there."""
    directory = pathlib.Path(directory)
    directory.mkdir(mode=0o700, exist_ok=True)
    for name, source in re.findall(r"^LoadCredential=([^:\n]+):(.+)$", unit_text, re.M):
        (directory / name).write_bytes(pathlib.Path(source).read_bytes())
    return [a.replace(f"{CREDENTIALS}/{unit}", str(directory)) for a in argv]
