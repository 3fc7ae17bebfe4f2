"""
The writers: text from data, for every file format kubesalt writes a component's configuration in.

``k8s_conf`` builds each component as data (a *component spec*, see its module docstring) and turns it into text
here: YAML and JSON documents, TOML (containerd), ``--flag=value`` command lines, systemd units and timers, haproxy
configurations. Each writer quotes or refuses what its format would read differently from what was meant, so a
value that validation missed can never add a directive, a flag, a keyword or a comment.
"""

import json
import re

import salt.utils.yaml
from salt.exceptions import SaltInvocationError

HEADER = "# Managed by kubesalt: built by k8s_conf from the k8s pillar; edit the pillar, not this file."


def file(contents):
    """One entry of a component spec's ``files``: ``contents``, mode 0600 (every file kubesalt writes is root's)."""
    return {"contents": contents, "mode": "0600"}


def to_yaml(data):
    """``data`` as a block-style YAML document, keys in their order."""
    return salt.utils.yaml.safe_dump(data, default_flow_style=False, sort_keys=False)


def to_json(data):
    """``data`` as indented JSON, keys in their order, with a final newline."""
    return json.dumps(data, indent=2, sort_keys=False) + "\n"


def flags(spec):
    """Turn an ordered ``{flag: value}`` mapping into ``--flag=value`` strings (None values are dropped)."""
    out = []
    for flag, value in spec.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, (list, tuple)):
            value = ",".join(str(v) for v in value)
        out.append(f"--{flag}={value}")
    return out


# --------------------------------------------------------------------------------------------------------------------
# TOML (containerd)
# --------------------------------------------------------------------------------------------------------------------
def to_toml(data, prefix=()):
    """Nested mappings of strings, numbers, booleans and lists of scalars as TOML; ``prefix`` is the table path of
    ``data`` itself (``("host", "mirror.example")`` writes ``[host."mirror.example"]``)."""
    lines, tables = [], []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{_toml_key(key)} = {_toml_value(value, key)}")
    out = []
    if lines:
        if prefix:
            out.append("[" + ".".join(_toml_key(k) for k in prefix) + "]")
        out.extend(lines)
        out.append("")
    for key, value in tables:
        out.append(to_toml(value, tuple(prefix) + (key,)))
    return "\n".join(part for part in out if part is not None).replace("\n\n\n", "\n\n")


def _toml_key(key):
    key = str(key)
    return key if re.match(r"^[A-Za-z0-9_-]+$", key) else json.dumps(key)


def _toml_value(value, key):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v, key) for v in value) + "]"
    raise SaltInvocationError(f"to_toml: value of '{key}' has unsupported type {type(value).__name__}")


# --------------------------------------------------------------------------------------------------------------------
# systemd
# --------------------------------------------------------------------------------------------------------------------
_C_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _arg(value):
    """One command-line argument as systemd reads it back as exactly one argument (systemd.syntax "Quoting"):
    ``%`` and ``$`` doubled (no specifier or variable expansion; the whole argument ``$MAINPID`` alone is kept for
    ExecReload), and quoted, with C escapes, when it holds
    whitespace, a quote, a backslash, a ``;`` or a control character. A value validation missed can therefore
    never end the line (add a directive) or split into two arguments (add a flag)."""
    if value == "$MAINPID":  # the one systemd variable kubesalt writes itself (ExecReload=/bin/kill -USR2 $MAINPID)
        return value
    text = str(value).replace("%", "%%").replace("$", "$$")
    if text and not re.search(r"[\s\"'\\;\x00-\x1f\x7f]", text):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    escaped = _CONTROL.sub(lambda m: _C_ESCAPES.get(m.group(0), f"\\x{ord(m.group(0)):02x}"), escaped)
    return f'"{escaped}"'


def _setting(key, value):
    """A [Service] setting's value as written: one line, nothing systemd would expand."""
    text = str(value)
    if _CONTROL.search(text) or "%" in text or "$" in text:
        raise SaltInvocationError(f"unit setting {key}={text!r}: control characters, '%' and '$' are not written")
    return text


def _commands(value):
    """One command (a list of arguments) or a list of commands, as a list of commands."""
    return value if value and isinstance(value[0], list) else [value] if value else []


def _command(argv):
    """A command line (a list of arguments, or one word) for ExecStart/ExecStartPre, every argument quoted."""
    return " ".join(_arg(a) for a in ([argv] if isinstance(argv, str) else argv))


def spec(
    unit,
    description,
    exec_,
    flags,
    files=None,
    certificates=(),
    secrets=(),
    after=(),
    requires=(),
    service=None,
    **extra,
):
    """
    A component spec (the shape ``k8s_conf``'s module docstring describes; :py:func:`unit` writes its unit): the unit
    ``unit`` runs ``exec_`` with ``flags``, writes ``files``, restarts for ``certificates`` and ``secrets``, and
    restarts on failure unless ``service`` says otherwise. ``extra`` adds keys (``before``, ``public_keys``,
    ``commands``, ``documentation``, ...).
    """
    return {
        "unit": unit,
        "description": description,
        "exec": exec_,
        "flags": flags,
        "files": files or {},
        "certificates": list(certificates),
        "secrets": list(secrets),
        "after": list(after),
        "requires": list(requires),
        "service": service or {"Restart": "on-failure", "RestartSec": 5},
        **extra,
    }


def unit(spec):
    """The text of the systemd unit of a component ``spec`` (``k8s_conf.unit`` documents it)."""
    lines = [
        HEADER,
        "[Unit]",
        f"Description={spec['description']}",
        f"Documentation={spec.get('documentation') or 'https://kubernetes.io/docs/'}",
    ]
    for key, what in (("After", "after"), ("Wants", "after"), ("Requires", "requires"), ("Before", "before")):
        values = [v for v in spec.get(what) or [] if key != "Wants" or v.endswith(".target")]
        if values:
            lines.append(f"{key}={' '.join(values)}")
    lines += ["", "[Service]"]
    service = dict(spec.get("service") or {})
    commands = {key: service.pop(key, None) or [] for key in ("ExecStartPre", "ExecReload")}
    for command in _commands(commands["ExecStartPre"]):
        lines.append(f"ExecStartPre={_command(command)}")
    if spec.get("exec"):
        flags = spec.get("flags") or []
        lines.append(f"ExecStart={_arg(spec['exec'])}" + "".join(f" \\\n  {_arg(flag)}" for flag in flags))
    for command in spec.get("commands") or []:
        lines.append(f"ExecStart={_command(command)}")
    for command in _commands(commands["ExecReload"]):
        lines.append(f"ExecReload={_command(command)}")
    for key, values in service.items():
        for value in values if isinstance(values, list) else [values]:
            lines.append(f"{key}={_arg(value) if key == 'Environment' else _setting(key, value)}")
    lines += ["", "[Install]", "WantedBy=multi-user.target", ""]
    return "\n".join(lines)


def timer(description, on_calendar):
    """The text of a systemd timer that starts its service at ``on_calendar`` (an OnCalendar expression), spread
    over ten minutes, and catches up a run missed while the machine was off (``Persistent=``)."""
    return "\n".join(
        [
            HEADER,
            "[Unit]",
            f"Description={_setting('Description', description)}",
            "",
            "[Timer]",
            f"OnCalendar={_setting('OnCalendar', on_calendar)}",
            "RandomizedDelaySec=600",
            "Persistent=true",
            "",
            "[Install]",
            "WantedBy=timers.target",
            "",
        ]
    )


# --------------------------------------------------------------------------------------------------------------------
# haproxy
# --------------------------------------------------------------------------------------------------------------------
_HAPROXY_WORD = re.compile(r"[^\s#'\"\\\x00-\x1f\x7f]+")


def haproxy(sections):
    """haproxy configuration text from ``[(section header, [[word, ...], ...]), ...]``; every word checked to be one
    haproxy word (a value can never add a keyword, an argument or a comment)."""
    out = ["# Managed by kubesalt (k8s_conf.api_balancer): built from the k8s pillar; edit the pillar, not this file."]
    for header, lines in sections:
        out.append(" ".join(_haproxy_words(header)))
        out += ["    " + " ".join(_haproxy_words(line)) for line in lines]
    return "\n".join(out) + "\n"


def _haproxy_words(words):
    for word in words:
        if not _HAPROXY_WORD.fullmatch(str(word)):
            raise SaltInvocationError(f"{word!r} cannot be written into the haproxy configuration as one word")
    return [str(w) for w in words]


def haproxy_address(ip, port):
    """``ip:port`` as haproxy reads it (an IPv6 address as ``ipv6@ip:port``)."""
    return f"ipv6@{ip}:{port}" if ":" in str(ip) else f"{ip}:{port}"
