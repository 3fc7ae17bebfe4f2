"""
kubesalt's outputter: the reports of the ``k8s`` runner as compact tables.

``salt-run k8s.status`` and ``salt-run k8s.converge`` / ``k8s.follow`` return ``{"outputter": "kubesalt",
"report": <report>, "retcode": <exit code>}``; salt-run then prints with this outputter, unless ``--out`` names another
(``--out=json`` prints that whole mapping). Their progress lines reach it as ``progress`` events. Anything else is
printed as ``nested`` would.

CLI Example:

.. code-block:: bash

    salt-run k8s.status
    salt-run k8s.status --out=kubesalt
"""

import salt.output

__virtualname__ = "kubesalt"


def __virtual__():
    return __virtualname__


def _table(headers, rows):
    """Left-aligned columns, two spaces apart; the last column is not padded."""
    rows = [[("-" if cell in (None, "") else str(cell)) for cell in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in rows)) if rows else len(str(h)) for i, h in enumerate(headers)]
    lines = []
    for row in [list(headers), *rows]:
        cells = [cell.ljust(widths[i]) if i < len(row) - 1 else cell for i, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
    return lines


def _size(value):
    if value is None:
        return ""
    size, unit = float(value), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            break
        size /= 1024
    return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"


def _version(versions, component):
    seen = versions.get(component) or {}
    installed, running = seen.get("installed") or "", seen.get("running") or ""
    if running and installed and running != installed:
        return f"{installed} (runs {running})"
    return installed or running


def _ready(node, probed):
    if not node["answered"] and node["ready"] is None:
        return "no answer"
    if node["ready"] is None:
        return "" if probed else "not probed"
    return "Ready" if node["ready"] else node["reason"] or "NotReady"


def status_text(report):
    """The ``k8s.status`` report as text."""
    attention = report.get("attention") or []
    lines = [f"kubesalt: {len(attention)} thing(s) need attention" if attention else "kubesalt: all OK"]
    lines += [f"  - {reason}" for reason in attention]
    nodes, probed = report.get("nodes") or {}, report.get("probed")
    lines.append("")
    lines += _table(
        ("NODE", "ROLES", "READY", "KUBELET", "CONTAINERD", "ETCD"),
        [
            (
                name,
                ",".join(node["roles"]) or "(not in k8s:nodes)",
                _ready(node, probed),
                _version(node["versions"], "kubelet"),
                _version(node["versions"], "containerd"),
                _version(node["versions"], "etcd"),
            )
            for name, node in sorted(nodes.items())
        ],
    )
    if not probed:
        lines.append("(Ready, etcd and the API are not probed where k8s:manage_services is false)")
    etcd = report.get("etcd") or {}
    if etcd.get("probed"):
        lines.append("")
        lines += _table(
            ("ETCD MEMBER", "HEALTH", "LEADER", "DB SIZE", "VERSION", "ENDPOINT"),
            [
                (
                    name,
                    "healthy" if m["healthy"] else "UNHEALTHY",
                    "*" if m["is_leader"] else "",
                    _size(m.get("db_size")),
                    m.get("version"),
                    m.get("endpoint"),
                )
                for name, m in etcd["members"].items()
            ],
        )
        quorum = {True: "yes", False: "NO", None: "unknown"}[etcd.get("quorum")]
        snapshots = etcd.get("last_snapshot") or {}
        last = "; ".join(f"{m}: {s}" for m, s in sorted(snapshots.items())) or "none reported"
        lines.append(f"quorum: {quorum}   last snapshot: {last}")
    api = report.get("api") or []
    if api:
        lines.append("")
        lines += _table(
            ("API SERVER", "READY", "SEEN FROM"),
            [(a["server"], "yes" if a["ready"] else "NO", ", ".join(sorted(a["from"]))) for a in api],
        )
    certificates = report.get("certificates") or []
    lines.append("")
    lines += _table(
        ("CERTIFICATE", "MINION", "DAYS", "STATE", "NOT AFTER"),
        [(c["name"], c["minion"], c["days_left"], c["state"], str(c["not_after"])[:10]) for c in certificates],
    )
    drift = report.get("drift")
    if drift is not None:
        lines.append("")
        lines += _table(
            ("DRIFT", "WOULD CHANGE", "WOULD FAIL"),
            [
                (m, d.get("error") or ", ".join(d["pending"]) or "nothing", ", ".join(d["failed"]))
                for m, d in sorted(drift.items())
            ],
        )
    return "\n".join(lines)


def converge_text(report):
    """The ``k8s.converge`` / ``k8s.follow`` report: a table of the steps and their times."""
    words = {True: "ok", False: "FAIL", None: "pending"}
    rows = []
    for step in report.get("steps") or []:
        word = words.get(step.get("result"), "?")
        if step.get("result") is False and "requisite failed" in str(step.get("comment", "")):
            word = "not run"
        targets = step.get("targets") or []
        rows.append((step["step"], len(targets) if targets else "", word, f"{step.get('duration') or 0:.1f} s"))
    rows.append(("total", "", "ok" if report.get("result") else "FAIL", f"{report.get('duration') or 0:.1f} s"))
    lines = [""] + _table(("STEP", "MINIONS", "RESULT", "TIME"), rows)
    for step in report.get("steps") or []:
        if step.get("result") is False and "requisite failed" not in str(step.get("comment", "")):
            lines.append(f"{step['step']}: {step.get('comment', '')}")
    if report.get("error"):
        lines.append(report["error"])
    return "\n".join(lines)


def output(data, **kwargs):
    """
    Print a ``k8s`` runner report (or one of its progress lines); anything else as ``nested``.
    """
    if isinstance(data, dict) and data.get("suffix") == "progress" and isinstance(data.get("event"), dict):
        return str(data["event"].get("message", ""))
    report = data.get("report") if isinstance(data, dict) else None
    if isinstance(report, dict) and report.get("kind") == "status":
        return status_text(report)
    if isinstance(report, dict) and report.get("kind") == "converge":
        return converge_text(report)
    # Salt's get_printout prefers opts["output"] over the outputter it is asked for: with `--out=kubesalt` that is
    # this one again, which recursed until RecursionError (e.g. `salt-run state.orchestrate ... --out=kubesalt`).
    return salt.output.string_format(data, "nested", dict(__opts__, output="nested"))
