"""
The type of every kubesalt setting, enforced in one place.

Every pillar value ends up somewhere it can do harm: in systemd units, command-line flags, TOML, YAML, JSON,
kubeconfigs and file paths. :py:data:`SCHEMA` gives each key of ``formulas/k8s/defaults.yaml`` a type, and
:py:func:`errors` checks merged settings against it before anything else looks at them: a value of the wrong type,
one with a control character (a line break ends a unit directive), whitespace where the value would split into two
arguments, a ``..`` path component, or a key nobody knows (a typo would otherwise be silently ignored: the message
suggests the closest known key) is refused with a message that names the key. Relations between keys (overlapping
networks, a CA minion that is not a master, ...) are checked afterwards by ``k8s.check``.

The writers do not trust this alone: ``k8s_conf.unit`` quotes every argument so that a value validation missed still
cannot add a directive or a flag.
"""

import difflib
import re
import urllib.parse

from kubesalt import data

# A character below 0x20 (line breaks and tabs included) or DEL.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_FLAG = re.compile(r"--[a-z0-9][a-z0-9-]*(=.*)?", re.S)
_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]+")
_IMAGE = re.compile(r"[a-z0-9][a-z0-9._/:@-]*(:[A-Za-z0-9_.-]+)?(@sha256:[0-9a-f]{64})?")
_API_VERSION = re.compile(r"([a-z0-9.-]+/)?v[0-9]+((alpha|beta)[0-9]+)?")
_TAINT_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?")
_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_BATCH = re.compile(r"[1-9]\d*|([1-9]\d?|100)%")
# The certificate CN of a node is "system:node:<minion id>", and a CN holds at most 64 characters.
NODE_ID_MAX = 64 - len("system:node:")


def show(value):
    """A value as an error message quotes it: control characters escaped, so a message never spans lines."""
    text = value if isinstance(value, str) else repr(value) if not isinstance(value, (int, float)) else str(value)
    return text.encode("unicode_escape").decode("ascii") if _CONTROL.search(text) else text


class Type:
    """A check of one value: :py:meth:`problem` says what is wrong with it, or returns None."""

    def problem(self, value):
        raise NotImplementedError

    def errors(self, value, path):
        problem = self.problem(value)
        return [f"k8s:{path}: '{show(value)}' {problem}"] if problem else []


class Scalar(Type):
    """A value ``test`` accepts; ``what`` completes "is not ..." and ``fix`` says what would be right."""

    def __init__(self, what, test, fix=""):
        self.what, self.test, self.fix = what, test, fix

    def problem(self, value):
        if isinstance(value, str) and _CONTROL.search(value):
            return "contains a control character (a line break, tab or the like); refused"
        try:
            ok = self.test(value)
        except (TypeError, ValueError):
            ok = False
        if ok:
            return None
        return f"is not {self.what}" + (f" ({self.fix})" if self.fix else "")


class Optional(Type):
    """``inner``, or empty (``""``/null) for "not set"."""

    def __init__(self, inner):
        self.inner = inner

    def errors(self, value, path):
        return [] if value in ("", None) else self.inner.errors(value, path)


class Free(Type):
    """Data merged into a component's own configuration (KubeletConfiguration, config.toml, ...) and written by a
    serializer (YAML, TOML, JSON) that escapes it. Keys must be strings; nothing else is assumed."""

    def errors(self, value, path):
        if isinstance(value, dict):
            bad = [k for k in value if not isinstance(k, str)]
            out = [f"k8s:{path}: key '{show(k)}' is not a string" for k in bad]
            for key, item in value.items():
                out += self.errors(item, f"{path}:{key}")
            return out
        if isinstance(value, list):
            return [e for index, item in enumerate(value) for e in self.errors(item, f"{path}:{index}")]
        if isinstance(value, str) and "\x00" in value:
            return [f"k8s:{path}: '{show(value)}' contains a NUL character; refused"]
        return []


class ListOf(Type):
    def __init__(self, item, single=False):
        self.item, self.single = item, single

    def errors(self, value, path):
        if self.single and isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            return [f"k8s:{path}: '{show(value)}' is not a list"]
        # Items of a structure are named by their index (images:0:url); plain values by the list (extra_flags).
        indexed = isinstance(self.item, (Struct, MapOf, Free))
        return [
            e
            for index, item in enumerate(value)
            for e in self.item.errors(item, f"{path}:{index}" if indexed else path)
        ]


class MapOf(Type):
    def __init__(self, key, value, what="a mapping"):
        self.key, self.value, self.what = key, value, what

    def errors(self, value, path):
        if not isinstance(value, dict):
            return [f"k8s:{path}: '{show(value)}' is not {self.what}"]
        out = []
        for key, item in value.items():
            problem = self.key.problem(key)
            if problem:
                out.append(f"k8s:{path}: key '{show(key)}' {problem}")
            else:
                out += self.value.errors(item, f"{path}:{key}")
        return out


class Struct(Type):
    """A mapping with known keys; an unknown key is refused, with the closest known key as a suggestion, and a key
    listed in ``required`` must be there."""

    def __init__(self, required=(), **fields):
        self.fields, self.required = fields, tuple(required)

    def errors(self, value, path):
        where = f"k8s:{path}" if path else "k8s"
        if not isinstance(value, dict):
            return [f"{where}: '{show(value)}' is not a mapping"]
        out = []
        for key in value:
            if key not in self.fields:
                close = difflib.get_close_matches(str(key), list(self.fields), n=1, cutoff=0.6)
                hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(sorted(self.fields))}"
                out.append(f"{where}:{show(key)}: unknown key; {hint}")
        for key, kind in self.fields.items():
            if key in value:
                out += kind.errors(value[key], f"{path}:{key}" if path else key)
            elif key in self.required:
                out.append(f"{where}:{key}: missing")
        return out


# -- scalar types ------------------------------------------------------------------------------------------------------
def _is_text(value):
    return isinstance(value, str) and value != ""


def _int_in(low, high=None):
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low and (high is None or v <= high)


def _is_path(value):
    if not _is_text(value) or not value.startswith("/") or re.search(r"\s", value):
        return False
    parts = value.rstrip("/").split("/")[1:]
    return value == "/" or all(part not in ("", ".", "..") for part in parts)


def _is_url(value, schemes=("http", "https"), path=True):
    if not _is_text(value) or re.search(r"\s", value):
        return False
    parsed = urllib.parse.urlsplit(value)
    host = parsed.hostname or ""
    host_ok = data.ip(host) is not None or data.is_dns_name(host.lower()) or data.is_dns_label(host.lower())
    return (
        parsed.scheme in schemes
        and host_ok
        and (path or parsed.path in ("", "/"))
        and not parsed.query
        and not parsed.fragment
        and (parsed.port is None or 1 <= parsed.port <= 65535)
    )


def _is_node_id(value):
    return _is_text(value) and len(value) <= NODE_ID_MAX and data.is_dns_name(value)


def _is_taint_key(value):
    if not _is_text(value):
        return False
    prefix, _, name = value.rpartition("/")
    return (not prefix or data.is_dns_name(prefix)) and bool(_TAINT_NAME.fullmatch(name))


def _is_port_range(value):
    match = re.fullmatch(r"(\d+)-(\d+)", str(value))
    return bool(match) and 1 <= int(match.group(1)) < int(match.group(2)) <= 65535


def _is_pem(value):
    return isinstance(value, str) and "-----BEGIN CERTIFICATE-----" in value and "\x00" not in value


class _Pem(Scalar):
    """A PEM certificate: line breaks belong in it (it is written to a file, never into a unit or a flag)."""

    def problem(self, value):
        return None if _is_pem(value) else "is not a PEM certificate (-----BEGIN CERTIFICATE----- ...)"


TEXT = Scalar("a string", _is_text)
WORD = Scalar("a single word", lambda v: _is_text(v) and not re.search(r"\s", v))
BOOL = Scalar("true or false", lambda v: isinstance(v, bool))
PORT = Scalar("a TCP port", _int_in(1, 65535), "1 to 65535")
SECONDS = Scalar(
    "a positive number of seconds", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
)
WHOLE_SECONDS = Scalar("a whole number of seconds", _int_in(1), "e.g. 3600")
DAYS = Scalar("a positive number of days", _int_in(1))
COUNT = Scalar("a whole number", _int_in(0))
PATH = Scalar("an absolute path", _is_path, "e.g. /etc/kubernetes; no '..', '.', '//' or whitespace")
IP = Scalar("an IP address", lambda v: data.ip(v) is not None and "%" not in str(v), "no zone id")
CIDR = Scalar(
    "a network in CIDR notation with no host bits set", lambda v: data.net(v) is not None, "e.g. 10.200.0.0/16"
)
VERSION = Scalar("a MAJOR.MINOR.PATCH version", data.is_version, "e.g. 1.37.1")
DNS_NAME = Scalar("a DNS name", lambda v: data.is_dns_name(v), "lowercase letters, digits, '-' and '.'")
DNS_LABEL = Scalar("a DNS label", data.is_dns_label, "lowercase letters, digits and '-'")
NODE_ID = Scalar(
    f"a Kubernetes node name of at most {NODE_ID_MAX} characters",
    _is_node_id,
    "lowercase RFC 1123: letters, digits, '-' and '.'; it becomes the Node's name and a certificate CN",
)
HTTP_URL = Scalar("an http(s) URL", _is_url, "e.g. http://mirror.example:8080/k8s")
API_URL = Scalar(
    "an https URL of the API", lambda v: _is_url(v, ("https",), path=False), "e.g. https://k8s-api.example:6443"
)
FLAG = Scalar("a --flag or --flag=value", lambda v: isinstance(v, str) and bool(_FLAG.fullmatch(v)))
PACKAGE = Scalar("a distribution package name", lambda v: isinstance(v, str) and bool(_PACKAGE.fullmatch(v)))
IMAGE = Scalar(
    "an image reference", lambda v: isinstance(v, str) and bool(_IMAGE.fullmatch(v)), "e.g. registry.k8s.io/pause:3.10"
)
API_VERSION = Scalar("an API group/version", lambda v: isinstance(v, str) and bool(_API_VERSION.fullmatch(v)))
TAINT_KEY = Scalar("a taint key", _is_taint_key, "e.g. node-role.kubernetes.io/control-plane")
PORT_RANGE = Scalar("a port range 'LOW-HIGH'", _is_port_range, "1 <= LOW < HIGH <= 65535")
BATCH = Scalar(
    "a node count or a percentage",
    lambda v: bool(_BATCH.fullmatch(str(v))) and not isinstance(v, bool),
    "e.g. 5 or 25%",
)
SHA256 = Scalar(
    "a sha256 digest",
    lambda v: isinstance(v, str) and bool(re.fullmatch(r"[0-9a-f]{64}", v)),
    "64 lowercase hex digits",
)
PEM = _Pem("a PEM certificate", _is_pem)
CALENDAR = Scalar(
    "a systemd calendar expression",
    lambda v: isinstance(v, str) and bool(re.fullmatch(r"[A-Za-z0-9*:/,.~ -]{1,100}", v)) and v.strip() == v,
    "e.g. daily, hourly or '*-*-* 00/6:00:00' (systemd.time(7))",
)
X25519_KEY = Scalar(
    "an X25519 public key",
    lambda v: isinstance(v, str) and bool(re.fullmatch(r"[A-Za-z0-9+/]{43}=", v)),
    "44 characters of base64, from k8s_pki.backup_keypair",
)
SAN = Scalar("an IP address or a DNS name", lambda v: data.ip(v) is not None or data.is_dns_name(str(v), True))


def enum(*choices):
    return Scalar(f"supported; use one of {', '.join(choices)}", lambda v: v in choices)


def digest(hash_type):
    size = data.HASH_SIZES[hash_type]
    return Scalar(
        f"a lowercase hex {hash_type} digest ({size} characters)",
        lambda v: isinstance(v, str) and bool(re.fullmatch(rf"[0-9a-f]{{{size}}}", v)),
    )


USER = Scalar(
    "a system user name",
    lambda v: v == "" or (isinstance(v, str) and bool(_USER.fullmatch(v))),
    "e.g. etcd; empty: root",
)
POD_SECURITY_LEVEL = enum("privileged", "baseline", "restricted")
ROLE = Scalar("a known role", lambda v: v in data.ROLES, f"use any of {', '.join(data.ROLES)}")
ARCH = enum("amd64", "arm64")
PROXY_MODE = enum("iptables", "ipvs", "nftables")
COMPONENT_FLAGS = {"version_flags": ListOf(FLAG), "extra_flags": ListOf(FLAG)}

SCHEMA = Struct(
    cluster_name=DNS_LABEL,
    cluster_domain=DNS_NAME,
    arch=ARCH,
    fs_root=Optional(PATH),
    manage_services=BOOL,
    versions=MapOf(
        Scalar("a component name", lambda v: isinstance(v, str) and bool(re.fullmatch(r"[a-z0-9_]+", v))), VERSION
    ),
    nodes=MapOf(
        NODE_ID,
        Struct(("roles", "ip"), roles=ListOf(ROLE, single=True), ip=IP, names=ListOf(DNS_NAME), pod_cidr=CIDR),
        "a mapping of minion id -> {roles, ip}",
    ),
    networks=Struct(
        node_cidr=CIDR,
        pod_cidr=CIDR,
        node_pod_prefix=Scalar("a prefix length", _int_in(1, 128)),
        service_cidr=CIDR,
        cluster_dns_ip=IP,
        node_port_range=PORT_RANGE,
    ),
    paths=Struct(
        config_dir=PATH,
        pki_dir=PATH,
        ca_dir=PATH,
        bin_dir=PATH,
        unit_dir=PATH,
        etcd_data_dir=PATH,
        kubelet_dir=PATH,
        cni_bin_dir=PATH,
        cni_conf_dir=PATH,
        containerd_config_dir=PATH,
    ),
    pki=Struct(
        ca_minion=Optional(NODE_ID),
        key_type=enum(*data.KEY_TYPES),
        ca_days=DAYS,
        cert_days=DAYS,
        renew_days=DAYS,
        rotate_keys=BOOL,
        super_admin=BOOL,
        apiserver_extra_sans=ListOf(SAN),
        backup=Struct(dir=PATH, recipient=Optional(X25519_KEY), push=BOOL),
        renewal=Struct(enabled=BOOL, interval=WHOLE_SECONDS, retry=WHOLE_SECONDS, lock_ttl=WHOLE_SECONDS),
    ),
    etcd=Struct(
        install=enum("artifact", "package"),
        packages=ListOf(PACKAGE),
        client_port=PORT,
        peer_port=PORT,
        restart_on_change=BOOL,
        health_timeout=SECONDS,
        user=USER,
        backup=Struct(
            dir=PATH,
            keep=Scalar("a number of snapshots", _int_in(1, 10000), "at least 1"),
            schedule=Optional(CALENDAR),
            copy_to=Optional(PATH),
            max_age=SECONDS,
        ),
    ),
    network=Struct(mode=enum("routes", "flannel"), backend=Free()),
    api_balancer=Struct(enabled=BOOL, port=PORT, packages=ListOf(PACKAGE), check_interval=SECONDS),
    artifacts=Struct(
        mirror=Optional(HTTP_URL),
        cache_dir=PATH,
        pins=MapOf(
            WORD,
            MapOf(
                VERSION,
                MapOf(ARCH, Struct(sha256=Optional(digest("sha256")), sha512=Optional(digest("sha512")), url=HTTP_URL)),
            ),
        ),
        checksum_urls=MapOf(WORD, HTTP_URL),
        connect_timeout=SECONDS,
        read_timeout=SECONDS,
        max_size_mib=Scalar("a size in MiB", _int_in(1, 1 << 20)),
        retries=Scalar("a number of retries", _int_in(0, 20)),
    ),
    apiserver=Struct(
        port=PORT,
        endpoint=Optional(API_URL),
        audit_rules=ListOf(Free()),
        audit_log_path=PATH,
        shutdown_delay=SECONDS,
        pod_security=Struct(
            enforce=POD_SECURITY_LEVEL,
            audit=POD_SECURITY_LEVEL,
            warn=POD_SECURITY_LEVEL,
            exempt_namespaces=ListOf(DNS_LABEL),
        ),
        pod_security_api_version=Optional(API_VERSION),
        **COMPONENT_FLAGS,
    ),
    controller_manager=Struct(allocate_node_cidrs=BOOL, terminated_pod_gc_threshold=COUNT, **COMPONENT_FLAGS),
    scheduler=Struct(config_api_version=API_VERSION, config=Free(), **COMPONENT_FLAGS),
    kubelet=Struct(
        runtime_flags=ListOf(FLAG),
        runtime_endpoint_in_config=BOOL,
        fail_swap_on=BOOL,
        max_pods=Scalar("a number of pods", _int_in(1)),
        pod_pids_limit=Scalar("a number of processes", _int_in(-1)),
        protect_kernel_defaults=BOOL,
        seccomp_default=BOOL,
        version_config=Free(),
        config=Free(),
        extra_flags=ListOf(FLAG),
    ),
    kube_proxy=Struct(
        config_api_version=API_VERSION,
        mode=PROXY_MODE,
        modes=MapOf(PROXY_MODE, enum("supported", "deprecated", "unavailable")),
        config=Free(),
        extra_flags=ListOf(FLAG),
    ),
    tls=Struct(
        min_version=enum("VersionTLS12", "VersionTLS13"),
        cipher_suites=ListOf(
            Scalar("a TLS cipher suite name", lambda v: bool(re.fullmatch(r"TLS_[A-Z0-9_]+", str(v))))
        ),
    ),
    master_taint=TAINT_KEY,
    node_packages=ListOf(PACKAGE),
    container_runtime=Struct(
        install=enum("artifact", "package"),
        packages=ListOf(PACKAGE),
        sandbox_image=IMAGE,
        containerd_deprecated_below=Optional(VERSION),
        crictl=BOOL,
        registries=MapOf(
            Scalar("a registry host[:port]", lambda v: _is_url(f"https://{v}", ("https",), False)),
            Struct(mirrors=ListOf(HTTP_URL), ca=PEM),
        ),
        images=ListOf(Struct(("name", "url", "sha256"), name=IMAGE, url=HTTP_URL, sha256=SHA256)),
        config=Free(),
    ),
    addons=Struct(coredns=Struct(enabled=BOOL, image=Optional(IMAGE), replicas=COUNT, wait_ready=BOOL)),
    admin=Struct(kubeconfig_paths=ListOf(PATH)),
    timeouts=Struct(apiserver_ready=SECONDS, node_ready=SECONDS, addons_ready=SECONDS, drain=SECONDS),
    worker_batch=BATCH,
    upgrade=Struct(node_batch=Scalar("a whole number of at least 1", _int_in(1))),
)


# Keys k8s.settings adds to the merged settings itself: derived data, not settings.
DERIVED_KEYS = ("catalogue", "releases", "cluster")

# The arguments of the day-2 orchestrations (pillar k8s_op, see k8s.operation); not settings.
OPERATION = Struct(
    node=NODE_ID,
    replace=NODE_ID,
    seed=NODE_ID,
    snapshot=Scalar("an absolute path or 'latest'", lambda v: v == "latest" or _is_path(v), "e.g. latest"),
    drain_timeout=SECONDS,
    nodes=ListOf(NODE_ID),
)


def errors(settings):
    """Every type error of merged settings (the ``k8s`` mapping: defaults <- profile <- pillar), in key order; keys
    kubesalt adds itself (:py:data:`DERIVED_KEYS`) are not settings."""
    settings = {k: v for k, v in (settings or {}).items() if k not in DERIVED_KEYS}
    return SCHEMA.errors(settings, "")
