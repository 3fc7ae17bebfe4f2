"""The unit writer (k8s_conf.unit) quotes every argument: whatever a value holds -- spaces, quotes, a line break
followed by a directive, systemd specifiers -- it comes back as exactly one argument, and the unit has exactly the
directives kubesalt wrote. Checked with systemd's own parser (systemd-analyze verify) and with a reader of systemd's
quoting rules (systemd.syntax(7), "Quoting")."""

import re
import shutil
import subprocess

import pytest

from tests.support.loader import load

conf = load("k8s_conf")

HOSTILE = [
    "--v=2",
    "--feature-gates=A=true, B=false",
    "--v=2 --anonymous-auth=true",
    "--x=1\nExecStartPost=/bin/sh -c id",
    "--x=1\r\nUser=root",
    "--x=\"quoted\" and 'single'",
    "--x=back\\slash\\n",
    "--x=100% %n %%",
    "--x=$HOME ${PATH}",
    "--x=a;b",
    ";",
    "--tab=\tx",
    "--bell=\x07",
]


def unquote(text):
    """systemd's reading of one ExecStart= value: words split on whitespace, double quotes group, C escapes inside
    quotes, %% and $$ are a literal % and $."""
    words, i, word, in_word = [], 0, "", False
    escapes = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'"}
    while i < len(text):
        c = text[i]
        if c == '"':
            in_word, i = True, i + 1
            while text[i] != '"':
                if text[i] == "\\":
                    nxt = text[i + 1]
                    if nxt == "x":
                        word, i = word + chr(int(text[i + 2 : i + 4], 16)), i + 4
                        continue
                    word, i = word + escapes[nxt], i + 2
                    continue
                word, i = word + text[i], i + 1
            i += 1
        elif c.isspace():
            if in_word:
                words.append(word)
            word, in_word, i = "", False, i + 1
        else:
            word, in_word, i = word + c, True, i + 1
    if in_word:
        words.append(word)
    return [w.replace("%%", "%").replace("$$", "$") for w in words]


def spec(flags, commands=None):
    return {
        "unit": "demo",
        "description": "demo",
        "exec": "/bin/true",
        "flags": flags,
        "files": {},
        "certificates": [],
        "secrets": [],
        "after": ["network-online.target"],
        "requires": [],
        "service": {"Restart": "on-failure", "ExecStartPre": ["/bin/true", "--x=a b\nUser=root"]},
        **({"commands": commands, "exec": None} if commands else {}),
    }


def directives(text):
    return [line.split("=", 1)[0] for line in text.splitlines() if re.match(r"^[A-Za-z]+=", line)]


def exec_start(text):
    body = re.search(r"^ExecStart=(.*?)(?=\n[A-Z]|\n\n)", text, re.M | re.S).group(1)
    return unquote(body.replace("\\\n", " "))


def test_every_flag_comes_back_as_exactly_one_argument():
    text = conf.unit(spec(HOSTILE))
    assert exec_start(text) == ["/bin/true", *HOSTILE]


def test_no_value_adds_a_directive():
    text = conf.unit(spec(HOSTILE))
    assert directives(text) == [
        "Description",
        "Documentation",
        "After",
        "Wants",
        "ExecStartPre",
        "ExecStart",
        "Restart",
        "WantedBy",
    ]
    pre = re.search(r"^ExecStartPre=(.*)$", text, re.M).group(1)
    assert unquote(pre) == ["/bin/true", "--x=a b\nUser=root"]


def test_oneshot_commands_are_quoted_argument_by_argument():
    text = conf.unit(spec([], commands=[["/sbin/ip", "route", "replace", "10.0.0.0/24\nUser=root", "via", "x y"]]))
    assert directives(text).count("ExecStart") == 1 and "User" not in directives(text)
    assert exec_start(text) == ["/sbin/ip", "route", "replace", "10.0.0.0/24\nUser=root", "via", "x y"]


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze missing: run tests/bootstrap.sh")
def test_systemd_parses_the_hostile_unit(tmp_path):
    path = tmp_path / "demo.service"
    path.write_text(conf.unit(spec(HOSTILE)))
    out = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True)
    problems = [line for line in (out.stdout + out.stderr).splitlines() if "demo.service" in line]
    assert out.returncode == 0 and not problems, out.stdout + out.stderr


def test_the_reader_is_not_fooled_by_an_unquoted_line_break():
    """The check above can fail: an unquoted flag with a line break adds a directive."""
    text = "ExecStart=/bin/true \\\n  --x=1\nUser=root\n"
    assert "User" in directives(text)
