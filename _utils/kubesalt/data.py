"""
Small pure helpers over plain data, and the names every kubesalt module agrees on.

Constants that are facts about kubesalt (the roles of the inventory, the key types the PKI generates, the group the
API server's kubelet client certificate carries) are defined here once; settings that a user can change are not:
they live in ``formulas/k8s/defaults.yaml`` (and ``profiles.yaml``) only.
"""

import copy
import ipaddress
import re

# Roles a node can have in k8s:nodes.
ROLES = ("master", "worker", "etcd")
# Key types the PKI generates (k8s:pki:key_type).
KEY_TYPES = ("ecdsa-p256", "rsa-2048", "rsa-3072", "rsa-4096")
# Digest algorithms kubesalt verifies downloads with, and the length of their hex digests.
HASH_SIZES = {"sha256": 64, "sha512": 128}
# The O of the API server's kubelet client certificate. Not a built-in group: the cluster objects bind it to the
# built-in ClusterRole system:kubelet-api-admin (logs, exec, port-forward).
APISERVER_KUBELET_CLIENT_GROUP = "kubesalt:apiserver-kubelet-client"

# Matched whole (re.fullmatch): "$" would accept a trailing newline.
_VERSION_RE = re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)")
_DNS_LABEL_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


def merge(base, overlay):
    """A deep copy of ``base`` with ``overlay`` merged in: mappings recursively, anything else (lists too) replaced."""
    result = copy.deepcopy(base)
    for key, value in (overlay or {}).items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def as_list(value):
    """None -> [], a single string -> [it], any other iterable -> a list of it."""
    if value is None:
        return []
    if isinstance(value, (str, bytes)):
        return [value]
    return list(value)


def dedupe(values):
    """``values`` without repeats, in first-seen order."""
    seen, out = set(), []
    for value in values:
        if value not in seen:
            seen.add(value)
            out.append(value)
    return out


def version(value):
    """``"1.34.10"`` -> ``(1, 34, 10)``; None when ``value`` is not MAJOR.MINOR.PATCH."""
    match = _VERSION_RE.fullmatch(str(value or ""))
    return tuple(int(part) for part in match.groups()) if match else None


def is_version(value):
    return version(value) is not None


def ip(value):
    """An ``ipaddress`` address, or None when ``value`` is not one."""
    try:
        return ipaddress.ip_address(str(value))
    except (TypeError, ValueError):
        return None


def net(value):
    """An ``ipaddress`` network (no host bits set), or None when ``value`` is not one."""
    try:
        return ipaddress.ip_network(str(value), strict=True)
    except (TypeError, ValueError):
        return None


def is_dns_name(name, wildcard=False):
    """Whether ``name`` is a lowercase DNS name of labels a-z, 0-9 and '-' (``*.`` in front when ``wildcard``)."""
    text = str(name)
    if wildcard and text.startswith("*."):
        text = text[2:]
    return 0 < len(text) <= 253 and all(_DNS_LABEL_RE.fullmatch(label) for label in text.split("."))


def is_dns_label(name):
    return bool(_DNS_LABEL_RE.fullmatch(str(name)))
