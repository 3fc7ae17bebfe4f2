"""The lab's inventory, $LAB_STATE/lab.json: its nodes (id -> roles, address, base image), the profile it was
created with and the salt tree its master serves."""

import datetime
import json
import os
import re

from .common import LAB_JSON, NET, NODES_DIR, REPO, die, read, write

ID_RE = re.compile(r"^(master|worker)(\d\d)$")


def node_ip(node_id):
    role, num = ID_RE.match(node_id).groups()
    return str(NET.network_address + (10 if role == "master" else 20) + int(num))


def node_entry(node_id):
    m = ID_RE.match(node_id)
    if not m:
        die(f"node id {node_id!r}: expected masterNN or workerNN (e.g. worker03)")
    role = m.group(1)
    return {
        "grain_roles": [role],
        "roles": ["master", "etcd"] if role == "master" else ["worker"],
        "ip": node_ip(node_id),
    }


def salt_tree_env():
    """LAB_SALT_TREE: the tree whose formulas/ the lab master serves (e.g. a `git worktree` of another commit)."""
    value = os.environ.get("LAB_SALT_TREE")
    return os.path.abspath(value) if value else None


def load_lab():
    """The lab's inventory and settings, or None; a lab keeps the tree it was created with unless LAB_SALT_TREE is
    given."""
    data = read(LAB_JSON)
    lab = json.loads(data) if data else None
    if lab is not None:
        lab["salt_tree"] = salt_tree_env() or lab.get("salt_tree") or REPO
    return lab


def save_lab(lab):
    write(LAB_JSON, json.dumps(lab, indent=1, sort_keys=True) + "\n")


def new_lab(profile):
    masters = int(os.environ.get("LAB_MASTERS", "1"))
    workers = int(os.environ.get("LAB_WORKERS", "2"))
    if not 1 <= masters <= 9 or not 0 <= workers <= 89:
        die("LAB_MASTERS must be 1..9 and LAB_WORKERS 0..89")
    nodes = {f"master{i:02d}": node_entry(f"master{i:02d}") for i in range(1, masters + 1)}
    nodes.update({f"worker{i:02d}": node_entry(f"worker{i:02d}") for i in range(1, workers + 1)})
    return {
        "nodes": nodes,
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "salt_tree": salt_tree_env() or REPO,
        "profile": profile,
    }


def node_dir(node_id, *rest):
    return os.path.join(NODES_DIR, node_id, *rest)


def first_master(lab):
    return sorted(n for n, v in lab["nodes"].items() if "master" in v["roles"])[0]
