"""
The CIS Kubernetes Benchmark v1.12 on one kubesalt node: ``salt '*' k8s_cis.report``.

Every check of the benchmark (ids, titles and Automated/Manual as in aquasecurity/kube-bench ``cfg/cis-1.12``) that
concerns a component running on this node, by its roles in ``k8s:nodes``:

- section 1 (control plane) on masters -- its etcd rows (1.1.7, 1.1.8, 1.1.11, 1.1.12) on etcd members;
- section 2 (etcd) on etcd members;
- section 3 (control plane configuration) on masters, section 5 (policies) on the CA minion, which applies the
  cluster objects: mostly reviews for a person, reported ``MANUAL`` with what kubesalt does;
- section 4 (worker nodes) on every master and worker (masters run a kubelet too).

Each row is ``PASS``, ``FAIL``, ``MANUAL`` (a person must judge it; the detail says what kubesalt does) or ``N/A``
(the check cannot apply to this release, or kubesalt deliberately does otherwise; the detail gives the reason), with
a one-line detail: the value seen. A Manual check with a mechanical test is evaluated like an Automated one.

Where kubeadm's paths differ from kubesalt's, the benchmark's files map onto kubesalt's own, always taken from the
functions the formulas write them with: a "pod specification file" is the component's systemd unit
(``k8s_conf.unit_file``), kubeconfigs are ``k8s_conf.kubeconfig_path``, the PKI is ``kubesalt.pki.layout``, the
kubelet's and kube-proxy's config files are their ``--config``.

Two sources:

- ``live=True`` (the default): flags from the running processes (``/proc/<pid>/cmdline``, and etcd's ``ETCD_*``
  environment), each found by the basename of its executable (``argv[0]`` or ``/proc/<pid>/exe``) among the
  processes of the minion's own PID namespace (not a container's); config files named by those flags, modes and
  owners read on disk. A component that is not running fails its flag checks.
- ``live=False``: what the next state run writes -- the component specs of ``k8s_conf`` (flags, files and their
  modes, units), the PKI's ``kubesalt.pki.FILE_MODE``; every file root's, as the formulas write them. Useful before
  converging, and what the unit tests check.

The report sets a non-zero exit code when a check fails, so it can drive monitoring.
"""

import os

import salt.utils.yaml
from salt.exceptions import CommandExecutionError, SaltInvocationError

from kubesalt import files, pki

__virtualname__ = "k8s_cis"

BENCHMARK = "CIS Kubernetes Benchmark v1.12"
PASS, FAIL, MANUAL, NA = "PASS", "FAIL", "MANUAL", "N/A"
RESULTS = (PASS, FAIL, MANUAL, NA)
SECTIONS = {
    "1": "Control Plane Components",
    "2": "etcd",
    "3": "Control Plane Configuration",
    "4": "Worker Nodes",
    "5": "Policies",
}
# The owner formulas/k8s/macros.jinja (``service``) and kubesalt.files give every file kubesalt writes (rendered
# mode reports it; live mode reads the disk).
FORMULA_OWNER = "root:root"
# The components the checks read: the k8s_conf function that builds each one's spec, and the role that runs it.
COMPONENTS = {
    "kube-apiserver": ("apiserver", "master"),
    "kube-controller-manager": ("controller_manager", "master"),
    "kube-scheduler": ("scheduler", "master"),
    "etcd": ("etcd", "etcd"),
    "kubelet": ("kubelet", "node"),
    "kube-proxy": ("kube_proxy", "node"),
}
# Flags whose repeats add up (pflag string slices and maps); any other flag: the last one given counts.
LIST_FLAGS = {
    "enable-admission-plugins",
    "disable-admission-plugins",
    "authorization-mode",
    "tls-cipher-suites",
    "feature-gates",
}
# 1.2.29 and 4.2.12: the strong suites the benchmark accepts (TLS 1.3 suites are not configurable in Go).
STRONG_CIPHERS_APISERVER = {
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
}
STRONG_CIPHERS_KUBELET = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
}
# 1.2.28: encryption providers the benchmark accepts as the one Secrets are written with.
STRONG_PROVIDERS = ("aescbc", "kms", "secretbox")
POD_SECURITY_LEVELS = ("privileged", "baseline", "restricted")


def __virtual__():
    return __virtualname__


# --------------------------------------------------------------------------------------------------------------------
# Reading flags, processes and files
# --------------------------------------------------------------------------------------------------------------------
class _Unavailable(Exception):
    """What a check needs cannot be read (a component not running, a file missing): the check fails with this."""


def _flags(argv, environment=None):
    """``{flag: [every value given, in order]}`` of a command line (``argv`` without the program), after the
    ``ETCD_*``-style ``environment`` defaults (``{flag: value}``); ``--flag`` without a value is ``true``, and
    ``--flag value`` is read as pflag reads it."""
    out = {name: [str(value)] for name, value in (environment or {}).items()}
    from_argv = {}
    tokens = list(argv)
    i = 0
    while i < len(tokens):
        token = str(tokens[i])
        i += 1
        if not token.startswith("-") or token in ("-", "--"):
            continue
        name, sep, value = token.lstrip("-").partition("=")
        if not sep:
            if i < len(tokens) and not str(tokens[i]).startswith("-"):
                value = str(tokens[i])
                i += 1
            else:
                value = "true"
        from_argv.setdefault(name, []).append(value)
    out.update(from_argv)
    return out


def _etcd_environment(environ):
    """etcd reads ``ETCD_<FLAG>`` for every flag not given on its command line."""
    return {
        key[5:].lower().replace("_", "-"): value
        for key, value in environ.items()
        if key.startswith("ETCD_") and key not in ("ETCD_UNSUPPORTED_ARCH",)
    }


def _read_nul_list(path):
    with open(path, "rb") as fh:
        return [part.decode(errors="replace") for part in fh.read().split(b"\0") if part]


def _pid_namespace(proc_dir):
    try:
        return os.readlink(f"{proc_dir}/ns/pid")
    except OSError:
        return None


def _processes(proc_root, pids):
    """``[(pid, argv, exe)]`` of the processes in ``proc_root`` (only ``pids`` when given) that share this
    process's PID namespace: a host sees its containers' processes too, and a kubelet in a container is not this
    node's. Kernel threads and processes that ended meanwhile are left out."""
    if pids is None:
        try:
            pids = sorted(int(entry) for entry in os.listdir(proc_root) if entry.isdigit())
        except OSError:
            pids = []
    mine = _pid_namespace(f"{proc_root}/self")
    found = []
    for pid in pids:
        try:
            argv = _read_nul_list(f"{proc_root}/{pid}/cmdline")
        except OSError:
            continue
        if not argv or (mine and _pid_namespace(f"{proc_root}/{pid}") not in (mine, None)):
            continue
        try:
            exe = os.readlink(f"{proc_root}/{pid}/exe")
        except OSError:
            exe = ""
        found.append((int(pid), argv, exe))
    return found


def _find_process(processes, exec_path):
    """The process running ``exec_path``'s program: the basename of its ``argv[0]`` or of its executable is the
    program's; one started as ``exec_path`` itself is preferred, then the lowest pid."""
    name = os.path.basename(exec_path)
    matches = [
        p for p in processes if name in (os.path.basename(p[1][0]), os.path.basename(p[2].removesuffix(" (deleted)")))
    ]
    matches.sort(key=lambda p: (p[1][0] != exec_path, p[0]))
    return matches[0] if matches else None


def _load_yaml(text, where):
    try:
        return salt.utils.yaml.safe_load(text)
    except Exception as exc:  # noqa: BLE001 -- any parser error is a finding about that file
        raise _Unavailable(f"{where} is not YAML ({exc})") from None


def _dig(obj, path):
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return obj


def _norm(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).strip().lower()


def _items(value):
    if value is None:
        return []
    if isinstance(value, dict):
        return [f"{k}={_norm(v)}" for k, v in value.items()]
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value]
    return [part.strip() for part in str(value).split(",") if part.strip()]


def _show(value):
    if isinstance(value, bool):
        return _norm(value)
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return ",".join(_items(value))
    return str(value)


class _Component:
    """One component as a check sees it: its flags (``{flag: [values]}``) and the documents its flags name."""

    def __init__(self, node, name, spec, flags):
        self.node, self.name, self.spec, self.flags = node, name, spec, flags

    def flag(self, name):
        """The value of ``--name`` (the repeats of a list flag joined), or None when not given."""
        values = self.flags.get(name)
        if not values:
            return None
        return ",".join(v for v in values if v) if name in LIST_FLAGS else values[-1]

    def document(self, flag):
        """``(path, parsed YAML)`` of the file ``--flag`` names (None, None when the flag is not given)."""
        path = self.flag(flag)
        if not path:
            return None, None
        return path, _load_yaml(self.node.read(path, self.spec), path)

    def value(self, flag, config_path=None):
        """``(value, shown as)``: the flag when given (a kubelet flag overrides its config file), else the field at
        ``config_path`` of the ``--config`` file, else ``(None, what was looked at)``."""
        if flag and self.flag(flag) is not None:
            return self.flag(flag), f"--{flag}"
        if config_path:
            path, doc = self.document("config")
            key = ".".join(config_path)
            if doc is not None:
                value = _dig(doc, config_path)
                if value is not None:
                    return value, f"{key} ({os.path.basename(path)})"
            return None, f"--{flag}/{key}" if flag else key
        return None, f"--{flag}"


class _Node:
    """The node under review: its settings, roles, component specs and where facts are read from."""

    def __init__(self, config, minion_id, conf, live=True, proc_root="/proc", pids=None):
        nodes = config.get("nodes") or {}
        if minion_id not in nodes:
            raise SaltInvocationError(f"k8s:nodes:{minion_id}: '{minion_id}' is not in the inventory")
        self.config, self.id, self.conf, self.live, self.proc_root = config, minion_id, conf, live, proc_root
        cluster = config["cluster"]
        self.roles = set()
        for role, member in (
            ("master", minion_id in cluster["masters"]),
            ("etcd", minion_id in cluster["etcd_members"]),
            ("node", minion_id in cluster["nodes"]),
            ("ca", minion_id == cluster["ca_minion"]),
        ):
            if member:
                self.roles.add(role)
        self.version = str(config["versions"]["kubernetes"])
        self.specs = {
            name: conf(function)(config, minion_id)
            for name, (function, role) in COMPONENTS.items()
            if role in self.roles
        }
        self.network = conf("network")(config, minion_id) if "node" in self.roles else None
        self.admin = conf("admin")(config, minion_id) if "master" in self.roles else {}
        self.processes = {}
        if live:
            table = _processes(proc_root, pids)
            self.processes = {name: _find_process(table, spec["exec"]) for name, spec in self.specs.items()}
        self._components = {}
        self.declared = self._declared() if not live else {}

    # -- what the next state run writes (rendered mode) --------------------------------------------------------------
    def _declared(self):
        """``{path: (mode, owner)}`` of every file and directory the formulas write on this node."""
        declared = {}
        specs = list(self.specs.values()) + ([self.network] if self.network else [])
        for spec in specs:
            for path, file in list(spec["files"].items()) + list(self.conf("unit_file")(self.config, spec).items()):
                declared[path] = (files.parse_mode(file["mode"]), FORMULA_OWNER)
        for path, file in self.admin.items():
            declared[path] = (files.parse_mode(file["mode"]), FORMULA_OWNER)
        for path in _pki_files(self.config, self.id, self.roles):
            declared[path] = (pki.FILE_MODE, FORMULA_OWNER)
        if "etcd" in self.specs:
            declared.update(_data_dir(self.specs["etcd"], self.config["paths"]["etcd_data_dir"]))
        return declared

    # -- facts ---------------------------------------------------------------------------------------------------------
    def component(self, name):
        """The component ``name`` (a key of COMPONENTS) this node runs: its live process or its rendered spec."""
        if name in self._components:
            return self._components[name]
        spec = self.specs[name]
        if not self.live:
            environment = _etcd_environment(dict(_env_pairs(spec))) if name == "etcd" else None
            component = _Component(self, name, spec, _flags(spec["flags"], environment))
        else:
            process = self.processes[name]
            if not process:
                raise _Unavailable(
                    f"{name} is not running (no process named {os.path.basename(spec['exec'])}); "
                    "k8s_cis.report live=False shows what kubesalt configures"
                )
            pid, argv, _ = process
            environment = None
            if name == "etcd":
                try:
                    environment = _etcd_environment(dict(_split_env(_read_nul_list(f"{self.proc_root}/{pid}/environ"))))
                except OSError:
                    environment = None
            component = _Component(self, name, spec, _flags(argv[1:], environment))
        self._components[name] = component
        return component

    def read(self, path, spec=None):
        """The text of ``path``: in rendered mode the spec's file when it renders it, else (and in live mode) the
        disk's."""
        if not self.live and spec is not None and path in spec["files"]:
            return spec["files"][path]["contents"]
        text = files.read_text(path, encoding="utf-8")
        if text is None:
            raise _Unavailable(f"{path} does not exist")
        return text

    def meta(self, path):
        """``(mode, owner)`` of ``path``, or None when it does not (or will not) exist."""
        if self.live:
            return files.meta(path)
        return self.declared.get(path)

    def tree(self, *roots):
        """Every file and directory under ``roots`` (live: on disk; rendered: what the formulas write there)."""
        roots = [r.rstrip("/") for r in roots if r]
        if not self.live:
            return sorted(p for p in self.declared if any(p == r or p.startswith(r + "/") for r in roots))
        out = set()
        for root in roots:
            for directory, dirnames, filenames in os.walk(root):
                out.add(directory)
                out.update(os.path.join(directory, n) for n in dirnames + filenames)
        return sorted(out)

    def setting(self, *keys):
        return _dig(self.config, keys)


def _split_env(pairs):
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if sep:
            yield key, value


def _env_pairs(spec):
    environment = (spec.get("service") or {}).get("Environment") or []
    return _split_env(environment if isinstance(environment, list) else [environment])


def _pki_files(config, minion_id, roles):
    """The PKI files formulas/k8s/pki writes on this node: its certificates, keys and CA bundles
    (``k8s_pki.entitlements``), the cluster secrets and public key on masters, the CAs on the CA minion."""
    layout = pki.layout(config)
    paths = []
    for identity in pki.entitlements(config, minion_id):
        paths += [layout["certificates"][identity][k] for k in ("cert", "key", "ca_file")]
    if "master" in roles:
        paths += [s["path"] for s in layout["secrets"].values()] + list(layout["public_keys"].values())
    if "ca" in roles:
        paths += [ca[k] for ca in layout["cas"].values() for k in ("cert", "key")]
        paths += [s["source"] for s in layout["secrets"].values()]
    return sorted(set(paths))


def _data_dir(spec, data_dir):
    """``{data_dir: (mode, owner)}`` as the etcd unit sets them before every start (its ExecStartPre chmod/chown)."""
    mode, owner = None, FORMULA_OWNER
    for command in (spec.get("service") or {}).get("ExecStartPre") or []:
        if not isinstance(command, list) or not command or command[-1] != data_dir:
            continue
        program = os.path.basename(command[0].lstrip("+-@!:"))
        if program == "chmod":
            mode = files.parse_mode(command[-2])
        elif program == "chown":
            owner = command[-2]
    return {data_dir: (mode, owner)} if mode is not None else {}


# --------------------------------------------------------------------------------------------------------------------
# Tests of a value (None: not set)
# --------------------------------------------------------------------------------------------------------------------
def _is(expected):
    return lambda v: v is not None and _norm(v) == expected


def _unset_or(expected):
    return lambda v: v is None or _norm(v) == expected


def _set(v):
    return v is not None and _norm(v) != ""


def _unset(v):
    return v is None


def _has(item):
    return lambda v: item in _items(v)


def _set_without(item):
    return lambda v: v is not None and item not in _items(v)


def _unset_or_without(item):
    return lambda v: item not in _items(v)


def _at_least(number):
    def test(v):
        try:
            return v is not None and int(str(v)) >= number
        except ValueError:
            return False

    return test


def _subset_of(allowed):
    return lambda v: bool(_items(v)) and set(_items(v)) <= allowed


def _positive(v):
    try:
        return v is not None and int(str(v)) > 0
    except ValueError:
        return False


def _loopback_or_unset(v):
    if v is None:
        return True
    host = str(v).rsplit(":", 1)[0].strip("[]")
    return host in ("127.0.0.1", "::1", "localhost")


# --------------------------------------------------------------------------------------------------------------------
# Check builders: each returns fn(node) -> (result, detail)
# --------------------------------------------------------------------------------------------------------------------
def _flag(component, *items, na=None):
    """Every ``(flag, test)`` or ``(flag, config_path, test)`` of ``items`` must hold for ``component``'s value.
    ``na(node, values)`` may turn a failure into N/A by returning the reason."""

    def run(node):
        comp = node.component(component)
        shown, values, ok = [], [], True
        for item in items:
            flag, path, test = item if len(item) == 3 else (item[0], None, item[1])
            value, where = comp.value(flag, path)
            values.append(value)
            ok = ok and test(value)
            shown.append(f"{where}={_show(value)}" if value is not None else f"{where} not set")
        detail = "; ".join(shown)
        if ok:
            return PASS, detail
        reason = na(node, values) if na else None
        return (NA, f"{detail}: {reason}") if reason else (FAIL, detail)

    return run


def _mode_text(mode):
    return f"{mode:04o}" if mode is not None else "?"


def _files(paths_of, mode=None, owner=None, what="file"):
    """Every path ``paths_of(node)`` returns has permissions within ``mode`` and/or the owner ``owner``
    (``owner(node)`` when callable); a path that does not exist fails, and so does finding none. ``paths_of`` may
    return ``(None, reason)``: N/A on this node."""

    def run(node):
        paths = paths_of(node)
        if isinstance(paths, tuple) and paths and paths[0] is None:  # (None, reason): not applicable here
            return NA, paths[1]
        want_owner = owner(node) if callable(owner) else owner
        bad, seen = [], []
        for path in paths:
            meta = node.meta(path)
            if meta is None:
                bad.append(f"{path} missing")
                continue
            have_mode, have_owner = meta
            seen.append((have_mode, have_owner))
            if mode is not None and (have_mode is None or have_mode & ~mode):
                bad.append(f"{path} is {_mode_text(have_mode)}")
            if want_owner is not None and have_owner != want_owner:
                bad.append(f"{path} is {have_owner}")
        if not paths:
            return FAIL, f"no {what} found"
        if bad:
            return FAIL, "; ".join(bad[:5]) + (f" (+{len(bad) - 5} more)" if len(bad) > 5 else "")
        modes = sorted({_mode_text(m) for m, _ in seen})
        owners = sorted({o for _, o in seen})
        shown = ("mode " + "/".join(modes) if mode is not None else "") + (
            ("owner " if mode is None else ", ") + "/".join(owners) if want_owner is not None else ""
        )
        where = paths[0] if len(paths) == 1 else f"{len(paths)} {what}s"
        return PASS, f"{where}: {shown}"

    return run


def _unit_of(component):
    def paths(node):
        return sorted(node.conf("unit_file")(node.config, node.specs[component]))

    return paths


def _kubeconfig(identity):
    return lambda node: [node.conf("kubeconfig_path")(node.config, identity)]


def _kubelet_config_file(node):
    return [_config_path_of(node, "kubelet", "config")]


def _config_path_of(node, component, flag):
    """The file ``--flag`` of ``component``'s rendered spec names (the path the formula writes it to)."""
    return _flags(node.specs[component]["flags"]).get(flag, [None])[-1]


def _kubelet_client_ca(node):
    spec = node.specs["kubelet"]
    path = _config_path_of(node, "kubelet", "config")
    doc = _load_yaml(spec["files"][path]["contents"], path)
    return [_dig(doc, ("authentication", "x509", "clientCAFile"))]


def _admin_files(node):
    if not node.admin:
        ca = node.config["cluster"]["ca_minion"]
        return (None, f"no administrative kubeconfig on this master: kubesalt keeps them on the CA minion ({ca}) only")
    return sorted(node.admin)


def _cni_files(node):
    conf_dir = node.config["paths"]["cni_conf_dir"]
    if not node.live:
        return sorted(p for p in node.network["files"] if p.startswith(conf_dir + "/"))
    return [p for p in node.tree(conf_dir) if os.path.isfile(p)]


def _pki_tree(node):
    return node.tree(node.config["paths"]["pki_dir"], node.config["paths"]["ca_dir"])


def _pki_suffix(suffix):
    return lambda node: [p for p in _pki_tree(node) if p.endswith(suffix) and (not node.live or os.path.isfile(p))]


def _etcd_data_dir(node):
    return [_config_path_of(node, "etcd", "data-dir")]


def _etcd_owner(node):
    user = node.conf("etcd_user")(node.config)
    return f"{user}:{user}" if user else "etcd:etcd"


def _manual(describe):
    """A review for a person; ``describe(node)`` says what kubesalt does."""
    return lambda node: (MANUAL, describe(node))


# -- checks that read documents ----------------------------------------------------------------------------------------
def _encryption(node):
    comp = node.component("kube-apiserver")
    path = comp.flag("encryption-provider-config")
    if not path:
        return FAIL, "--encryption-provider-config not set"
    origin = ""
    try:
        text = node.read(path, comp.spec)
    except _Unavailable:
        if node.live:
            raise
        text, origin = pki.generate_secret("encryption-config"), " (what kubesalt.pki generates for a new cluster)"
    doc = _load_yaml(text, path) or {}
    for resource in doc.get("resources") or []:
        if "secrets" in (resource.get("resources") or []):
            providers = [next(iter(p)) for p in resource.get("providers") or [] if isinstance(p, dict) and p]
            first = providers[0] if providers else None
            rest = f", then {', '.join(providers[1:])}" if providers[1:] else ""
            detail = f"{os.path.basename(path)}{origin}: Secrets written with {first}{rest}"
            return (PASS if first in STRONG_PROVIDERS else FAIL), detail
    return FAIL, f"{path}: no provider for Secrets"


def _etcd_unique_ca(node):
    comp = node.component("etcd")
    trusted = comp.flag("trusted-ca-file")
    if not trusted:
        return FAIL, "--trusted-ca-file not set"
    kubernetes_ca = pki.layout(node.config)["cas"]["kubernetes-ca"]["bundle"]
    if node.live:
        mine = files.read_text(trusted)
        theirs = files.read_text(kubernetes_ca)
        if mine is None:
            return FAIL, f"--trusted-ca-file={trusted} does not exist"
        same = theirs is not None and mine.strip() == theirs.strip()
        return (FAIL, f"{trusted} is the Kubernetes CA") if same else (PASS, f"{trusted}: not the Kubernetes CA")
    # rendered: the path systemd hands etcd (LoadCredential=<name>:<source>) back to the file the PKI writes
    sources = dict(c.split(":", 1) for c in (comp.spec.get("service") or {}).get("LoadCredential") or [])
    source = sources.get(os.path.basename(trusted), trusted)
    ok = source != kubernetes_ca
    return (PASS if ok else FAIL), f"--trusted-ca-file={trusted} ({source}){'' if ok else ': the Kubernetes CA'}"


def _audit_policy(node):
    comp = node.component("kube-apiserver")
    path, doc = comp.document("audit-policy-file")
    if not path:
        return MANUAL, "auditing is off (k8s:apiserver:audit_rules is empty)"
    rules = (doc or {}).get("rules") or []
    levels = sorted({str(r.get("level")) for r in rules if isinstance(r, dict)})
    bodies = [lv for lv in levels if lv in ("Request", "RequestResponse")]
    return MANUAL, (
        f"{os.path.basename(path)}: {len(rules)} rules, levels {', '.join(levels) or 'none'}; "
        + (
            "no rule logs request or response bodies (Secrets, ConfigMaps, TokenReviews at Metadata at most)"
            if not bodies
            else f"rules at {', '.join(bodies)} log bodies: check Secrets are not among them"
        )
        + " (k8s:apiserver:audit_rules)"
    )


def _pod_security(node):
    """``(levels {enforce, audit, warn}, exempt namespaces)`` of the API server's PodSecurity admission, or None."""
    if not node.setting("apiserver", "pod_security_api_version"):
        return None
    comp = node.component("kube-apiserver")
    path, doc = comp.document("admission-control-config-file")
    for plugin in (doc or {}).get("plugins") or []:
        if isinstance(plugin, dict) and plugin.get("name") == "PodSecurity":
            conf = plugin.get("configuration") or {}
            defaults = conf.get("defaults") or {}
            exempt = (conf.get("exemptions") or {}).get("namespaces") or []
            return {m: defaults.get(m, "privileged") for m in ("enforce", "audit", "warn")}, exempt
    return dict.fromkeys(("enforce", "audit", "warn"), "privileged"), []


def _no_pod_security(node):
    return (
        f"PodSecurity admission does not exist in Kubernetes {node.version} (k8s:apiserver:pod_security_api_version "
        "is empty for it in profiles.yaml); PodSecurityPolicy, deprecated, is not enabled"
    )


def _policy_control(node):
    found = _pod_security(node)
    if found is None:
        return NA, _no_pod_security(node)
    levels, exempt = found
    detail = (
        f"PodSecurity admission: enforce {levels['enforce']}, audit {levels['audit']}, warn {levels['warn']}"
        f"; exempt namespaces: {', '.join(exempt) or 'none'} (k8s:apiserver:pod_security)"
    )
    return (PASS if levels["enforce"] != "privileged" else FAIL), detail


def _pss(level, what):
    """5.2.x: whether PodSecurity ``level`` (the lowest Pod Security Standard that forbids ``what``) is enforced."""

    def describe(node):
        found = _pod_security(node)
        if found is None:
            return f"{_no_pod_security(node)}: {what} is admitted unless an external policy engine refuses it"
        levels, exempt = found
        rank = POD_SECURITY_LEVELS.index
        if rank(levels["enforce"]) >= rank(level):
            how = f"refused by PodSecurity '{levels['enforce']}' (enforced)"
        elif rank(levels["warn"]) >= rank(level) or rank(levels["audit"]) >= rank(level):
            how = f"admitted under '{levels['enforce']}' but warned and audited ('{level}' forbids it)"
        else:
            how = f"admitted ('{level}' would forbid it)"
        return f"{what}: {how} in every namespace but {', '.join(exempt) or 'none'}; review the exempt ones"

    return _manual(describe)


def _hostname_override_na(node, values):
    if values and values[0] == node.id:
        return (
            "kubesalt names every node after its minion id, as its certificate (system:node:<id>) and the Node "
            "authorizer require, whatever the host name"
        )
    return None


def _rotate_certificates_na(node, values):
    if values and _norm(values[0]) == "false":
        return (
            "kubesalt issues and renews the kubelet's certificates itself (k8s.pki: the CA minion signs, "
            "k8s:pki:renew_days), without the certificates API"
        )
    return None


def _seccomp_na(node, values):
    if not node.setting("kubelet", "seccomp_default"):
        return (
            "off (k8s:kubelet:seccomp_default; profiles.yaml turns it on from Kubernetes 1.25, where the field is "
            "on by default)"
        )
    return None


def _not_enabled(reason):
    return lambda node, values: reason


def _rotate_server_certificate(node):
    comp = node.component("kubelet")
    gates = comp.flag("feature-gates")
    if gates is not None and "RotateKubeletServerCertificate=false" in [i.replace(" ", "") for i in _items(gates)]:
        return FAIL, f"--feature-gates={gates}"
    value, where = comp.value(None, ("featureGates", "RotateKubeletServerCertificate"))
    if value is not None and _norm(value) == "false":
        return FAIL, f"{where}=false"
    return PASS, (
        "RotateKubeletServerCertificate not disabled; kubesalt issues and renews the kubelet's serving certificate "
        "itself (serverTLSBootstrap off)"
    )


def _request_timeout(node):
    value = node.component("kube-apiserver").flag("request-timeout")
    return MANUAL, (f"--request-timeout={value}" if value else "--request-timeout not set: the default 60s")


def _unset_or_not_zero(v):
    return v is None or _norm(v) not in ("0", "0s")


def _admission_plugin(plugin, reason):
    """The API server enables admission plugin ``plugin``; N/A for ``reason`` when it does not."""
    return _flag("kube-apiserver", ("enable-admission-plugins", _has(plugin)), na=_not_enabled(reason))


def _says(text):
    return _manual(lambda node: text)


def _client_certificates(node):
    admin = (
        "admin in kubesalt:cluster-admins, a break-glass super-admin in system:masters"
        if node.setting("pki", "super_admin")
        else "admin in system:masters"
    )
    return (
        f"kubesalt issues client certificates to components and one admin credential ({admin}), on the CA minion "
        "only; authenticate people with OIDC (k8s:apiserver:extra_flags --oidc-*)"
    )


def _cluster_admin(node):
    if node.setting("pki", "super_admin"):
        return "kubesalt binds cluster-admin to kubesalt:cluster-admins only (its admin credential); review the others"
    return "kubesalt adds no cluster-admin binding (its admin credential is system:masters); review the others"


def _network_policy(node):
    mode = node.setting("network", "mode")
    return MANUAL, (
        f"network mode {mode} ({'flannel' if mode == 'flannel' else 'a CNI bridge and routes'}) enforces no "
        "NetworkPolicy: add a CNI that does before relying on them"
    )


def _seccomp_profile(node):
    if node.setting("kubelet", "seccomp_default"):
        return "the kubelet gives every container without a profile RuntimeDefault (k8s:kubelet:seccomp_default)"
    return "k8s:kubelet:seccomp_default is off here: set seccompProfile RuntimeDefault in your pods"


# --------------------------------------------------------------------------------------------------------------------
# The benchmark (kube-bench cfg/cis-1.12): id, title, Automated?, role that runs it, evaluation
# --------------------------------------------------------------------------------------------------------------------
A, M = True, False
MASTER, ETCD_MEMBER, NODE, CA = "master", "etcd", "node", "ca"
API, CM, SCHED, ETCD, KUBELET, PROXY = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "etcd",
    "kubelet",
    "kube-proxy",
)
ROOT = FORMULA_OWNER
_NO_DENY_EXTERNAL_IPS = (
    "not enabled by kubesalt: Service externalIPs stay available to whoever may create Services (CVE-2020-8554 "
    "matters with untrusted tenants); add it with k8s:apiserver:extra_flags "
    "['--enable-admission-plugins=DenyServiceExternalIPs'] (Kubernetes >= 1.21)"
)
_NO_EVENT_RATE_LIMIT = (
    "not enabled by kubesalt: its configuration API is alpha (eventratelimit.admission.k8s.io/v1alpha1); the API "
    "server's --max-requests-inflight limits still apply"
)
_NO_ALWAYS_PULL = (
    "not enabled by kubesalt: air-gapped nodes run images preloaded into containerd "
    "(k8s:container_runtime:images), which AlwaysPullImages would make unusable"
)

# fmt: off
CHECKS = [
    # 1.1 Control Plane Node Configuration Files
    ("1.1.1", A, MASTER, _files(_unit_of(API), mode=0o600),
     "Ensure that the API server pod specification file permissions are set to 600 or more restrictive"),
    ("1.1.2", A, MASTER, _files(_unit_of(API), owner=ROOT),
     "Ensure that the API server pod specification file ownership is set to root:root"),
    ("1.1.3", A, MASTER, _files(_unit_of(CM), mode=0o600),
     "Ensure that the controller manager pod specification file permissions are set to 600 or more restrictive"),
    ("1.1.4", A, MASTER, _files(_unit_of(CM), owner=ROOT),
     "Ensure that the controller manager pod specification file ownership is set to root:root"),
    ("1.1.5", A, MASTER, _files(_unit_of(SCHED), mode=0o600),
     "Ensure that the scheduler pod specification file permissions are set to 600 or more restrictive"),
    ("1.1.6", A, MASTER, _files(_unit_of(SCHED), owner=ROOT),
     "Ensure that the scheduler pod specification file ownership is set to root:root"),
    ("1.1.7", A, ETCD_MEMBER, _files(_unit_of(ETCD), mode=0o600),
     "Ensure that the etcd pod specification file permissions are set to 600 or more restrictive"),
    ("1.1.8", A, ETCD_MEMBER, _files(_unit_of(ETCD), owner=ROOT),
     "Ensure that the etcd pod specification file ownership is set to root:root"),
    ("1.1.9", M, MASTER, _files(_cni_files, mode=0o600, what="CNI file"),
     "Ensure that the Container Network Interface file permissions are set to 600 or more restrictive"),
    ("1.1.10", M, MASTER, _files(_cni_files, owner=ROOT, what="CNI file"),
     "Ensure that the Container Network Interface file ownership is set to root:root"),
    ("1.1.11", A, ETCD_MEMBER, _files(_etcd_data_dir, mode=0o700),
     "Ensure that the etcd data directory permissions are set to 700 or more restrictive"),
    ("1.1.12", A, ETCD_MEMBER, _files(_etcd_data_dir, owner=_etcd_owner),
     "Ensure that the etcd data directory ownership is set to etcd:etcd"),
    ("1.1.13", A, MASTER, _files(_admin_files, mode=0o600, what="admin kubeconfig"),
     "Ensure that the default administrative credential file permissions are set to 600"),
    ("1.1.14", A, MASTER, _files(_admin_files, owner=ROOT, what="admin kubeconfig"),
     "Ensure that the default administrative credential file ownership is set to root:root"),
    ("1.1.15", A, MASTER, _files(_kubeconfig(SCHED), mode=0o600),
     "Ensure that the scheduler.conf file permissions are set to 600 or more restrictive"),
    ("1.1.16", A, MASTER, _files(_kubeconfig(SCHED), owner=ROOT),
     "Ensure that the scheduler.conf file ownership is set to root:root"),
    ("1.1.17", A, MASTER, _files(_kubeconfig(CM), mode=0o600),
     "Ensure that the controller-manager.conf file permissions are set to 600 or more restrictive"),
    ("1.1.18", A, MASTER, _files(_kubeconfig(CM), owner=ROOT),
     "Ensure that the controller-manager.conf file ownership is set to root:root"),
    ("1.1.19", A, MASTER, _files(_pki_tree, owner=ROOT, what="PKI file"),
     "Ensure that the Kubernetes PKI directory and file ownership is set to root:root"),
    ("1.1.20", M, MASTER, _files(_pki_suffix(".crt"), mode=0o644, what="certificate"),
     "Ensure that the Kubernetes PKI certificate file permissions are set to 644 or more restrictive"),
    ("1.1.21", M, MASTER, _files(_pki_suffix(".key"), mode=0o600, what="key"),
     "Ensure that the Kubernetes PKI key file permissions are set to 600"),
    # 1.2 API Server
    ("1.2.1", M, MASTER, _flag(API, ("anonymous-auth", _is("false"))),
     "Ensure that the --anonymous-auth argument is set to false"),
    ("1.2.2", A, MASTER, _flag(API, ("token-auth-file", _unset)),
     "Ensure that the --token-auth-file parameter is not set"),
    ("1.2.3", M, MASTER, _admission_plugin("DenyServiceExternalIPs", _NO_DENY_EXTERNAL_IPS),
     "Ensure that the --DenyServiceExternalIPs is set"),
    ("1.2.4", A, MASTER, _flag(API, ("kubelet-client-certificate", _set), ("kubelet-client-key", _set)),
     "Ensure that the --kubelet-client-certificate and --kubelet-client-key arguments are set as appropriate"),
    ("1.2.5", A, MASTER, _flag(API, ("kubelet-certificate-authority", _set)),
     "Ensure that the --kubelet-certificate-authority argument is set as appropriate"),
    ("1.2.6", A, MASTER, _flag(API, ("authorization-mode", _set_without("AlwaysAllow"))),
     "Ensure that the --authorization-mode argument is not set to AlwaysAllow"),
    ("1.2.7", A, MASTER, _flag(API, ("authorization-mode", _has("Node"))),
     "Ensure that the --authorization-mode argument includes Node"),
    ("1.2.8", A, MASTER, _flag(API, ("authorization-mode", _has("RBAC"))),
     "Ensure that the --authorization-mode argument includes RBAC"),
    ("1.2.9", M, MASTER, _admission_plugin("EventRateLimit", _NO_EVENT_RATE_LIMIT),
     "Ensure that the admission control plugin EventRateLimit is set"),
    ("1.2.10", A, MASTER, _flag(API, ("enable-admission-plugins", _unset_or_without("AlwaysAdmit"))),
     "Ensure that the admission control plugin AlwaysAdmit is not set"),
    ("1.2.11", M, MASTER, _admission_plugin("AlwaysPullImages", _NO_ALWAYS_PULL),
     "Ensure that the admission control plugin AlwaysPullImages is set"),
    ("1.2.12", A, MASTER, _flag(API, ("disable-admission-plugins", _unset_or_without("ServiceAccount"))),
     "Ensure that the admission control plugin ServiceAccount is set"),
    ("1.2.13", A, MASTER, _flag(API, ("disable-admission-plugins", _unset_or_without("NamespaceLifecycle"))),
     "Ensure that the admission control plugin NamespaceLifecycle is set"),
    ("1.2.14", A, MASTER, _flag(API, ("enable-admission-plugins", _has("NodeRestriction"))),
     "Ensure that the admission control plugin NodeRestriction is set"),
    ("1.2.15", A, MASTER, _flag(API, ("profiling", _is("false"))),
     "Ensure that the --profiling argument is set to false"),
    ("1.2.16", A, MASTER, _flag(API, ("audit-log-path", _set)),
     "Ensure that the --audit-log-path argument is set"),
    ("1.2.17", A, MASTER, _flag(API, ("audit-log-maxage", _at_least(30))),
     "Ensure that the --audit-log-maxage argument is set to 30 or as appropriate"),
    ("1.2.18", A, MASTER, _flag(API, ("audit-log-maxbackup", _at_least(10))),
     "Ensure that the --audit-log-maxbackup argument is set to 10 or as appropriate"),
    ("1.2.19", A, MASTER, _flag(API, ("audit-log-maxsize", _at_least(100))),
     "Ensure that the --audit-log-maxsize argument is set to 100 or as appropriate"),
    ("1.2.20", M, MASTER, _request_timeout,
     "Ensure that the --request-timeout argument is set as appropriate"),
    ("1.2.21", A, MASTER, _flag(API, ("service-account-lookup", _unset_or("true"))),
     "Ensure that the --service-account-lookup argument is set to true"),
    ("1.2.22", A, MASTER, _flag(API, ("service-account-key-file", _set)),
     "Ensure that the --service-account-key-file argument is set as appropriate"),
    ("1.2.23", A, MASTER, _flag(API, ("etcd-certfile", _set), ("etcd-keyfile", _set)),
     "Ensure that the --etcd-certfile and --etcd-keyfile arguments are set as appropriate"),
    ("1.2.24", A, MASTER, _flag(API, ("tls-cert-file", _set), ("tls-private-key-file", _set)),
     "Ensure that the --tls-cert-file and --tls-private-key-file arguments are set as appropriate"),
    ("1.2.25", A, MASTER, _flag(API, ("client-ca-file", _set)),
     "Ensure that the --client-ca-file argument is set as appropriate"),
    ("1.2.26", A, MASTER, _flag(API, ("etcd-cafile", _set)),
     "Ensure that the --etcd-cafile argument is set as appropriate"),
    ("1.2.27", M, MASTER, _flag(API, ("encryption-provider-config", _set)),
     "Ensure that the --encryption-provider-config argument is set as appropriate"),
    ("1.2.28", M, MASTER, _encryption,
     "Ensure that encryption providers are appropriately configured"),
    ("1.2.29", M, MASTER, _flag(API, ("tls-cipher-suites", _subset_of(STRONG_CIPHERS_APISERVER))),
     "Ensure that the API Server only makes use of Strong Cryptographic Ciphers"),
    ("1.2.30", A, MASTER, _flag(API, ("service-account-extend-token-expiration", _is("false"))),
     "Ensure that the --service-account-extend-token-expiration parameter is set to false"),
    # 1.3 Controller Manager
    ("1.3.1", M, MASTER, _flag(CM, ("terminated-pod-gc-threshold", _positive)),
     "Ensure that the --terminated-pod-gc-threshold argument is set as appropriate"),
    ("1.3.2", A, MASTER, _flag(CM, ("profiling", _is("false"))),
     "Ensure that the --profiling argument is set to false"),
    ("1.3.3", A, MASTER, _flag(CM, ("use-service-account-credentials", _is("true"))),
     "Ensure that the --use-service-account-credentials argument is set to true"),
    ("1.3.4", A, MASTER, _flag(CM, ("service-account-private-key-file", _set)),
     "Ensure that the --service-account-private-key-file argument is set as appropriate"),
    ("1.3.5", A, MASTER, _flag(CM, ("root-ca-file", _set)),
     "Ensure that the --root-ca-file argument is set as appropriate"),
    ("1.3.6", A, MASTER, _flag(CM, ("feature-gates", _unset_or_without("RotateKubeletServerCertificate=false"))),
     "Ensure that the RotateKubeletServerCertificate argument is set to true"),
    ("1.3.7", A, MASTER, _flag(CM, ("bind-address", _is("127.0.0.1"))),
     "Ensure that the --bind-address argument is set to 127.0.0.1"),
    # 1.4 Scheduler
    ("1.4.1", A, MASTER, _flag(SCHED, ("profiling", _is("false"))),
     "Ensure that the --profiling argument is set to false"),
    ("1.4.2", A, MASTER, _flag(SCHED, ("bind-address", _is("127.0.0.1"))),
     "Ensure that the --bind-address argument is set to 127.0.0.1"),
    # 2 etcd
    ("2.1", A, ETCD_MEMBER, _flag(ETCD, ("cert-file", _set), ("key-file", _set)),
     "Ensure that the --cert-file and --key-file arguments are set as appropriate"),
    ("2.2", A, ETCD_MEMBER, _flag(ETCD, ("client-cert-auth", _is("true"))),
     "Ensure that the --client-cert-auth argument is set to true"),
    ("2.3", A, ETCD_MEMBER, _flag(ETCD, ("auto-tls", _unset_or("false"))),
     "Ensure that the --auto-tls argument is not set to true"),
    ("2.4", A, ETCD_MEMBER, _flag(ETCD, ("peer-cert-file", _set), ("peer-key-file", _set)),
     "Ensure that the --peer-cert-file and --peer-key-file arguments are set as appropriate"),
    ("2.5", A, ETCD_MEMBER, _flag(ETCD, ("peer-client-cert-auth", _is("true"))),
     "Ensure that the --peer-client-cert-auth argument is set to true"),
    ("2.6", A, ETCD_MEMBER, _flag(ETCD, ("peer-auto-tls", _unset_or("false"))),
     "Ensure that the --peer-auto-tls argument is not set to true"),
    ("2.7", M, ETCD_MEMBER, _etcd_unique_ca,
     "Ensure that a unique Certificate Authority is used for etcd"),
    # 3 Control Plane Configuration
    ("3.1.1", M, MASTER, _manual(_client_certificates),
     "Client certificate authentication should not be used for users"),
    ("3.1.2", M, MASTER, _says("kubesalt gives no person a service-account token; projected tokens expire (1.2.30)"),
     "Service account token authentication should not be used for users"),
    ("3.1.3", M, MASTER, _says("no bootstrap tokens: nodes join with certificates the CA minion issues them"),
     "Bootstrap token authentication should not be used for users"),
    ("3.2.1", M, MASTER, _flag(API, ("audit-policy-file", _set)),
     "Ensure that a minimal audit policy is created"),
    ("3.2.2", M, MASTER, _audit_policy,
     "Ensure that the audit policy covers key security concerns"),
    # 4.1 Worker Node Configuration Files
    ("4.1.1", A, NODE, _files(_unit_of(KUBELET), mode=0o600),
     "Ensure that the kubelet service file permissions are set to 600 or more restrictive"),
    ("4.1.2", A, NODE, _files(_unit_of(KUBELET), owner=ROOT),
     "Ensure that the kubelet service file ownership is set to root:root"),
    ("4.1.3", M, NODE, _files(_kubeconfig(PROXY), mode=0o600),
     "If proxy kubeconfig file exists ensure permissions are set to 600 or more restrictive"),
    ("4.1.4", M, NODE, _files(_kubeconfig(PROXY), owner=ROOT),
     "If proxy kubeconfig file exists ensure ownership is set to root:root"),
    ("4.1.5", A, NODE, _files(_kubeconfig(KUBELET), mode=0o600),
     "Ensure that the --kubeconfig kubelet.conf file permissions are set to 600 or more restrictive"),
    ("4.1.6", A, NODE, _files(_kubeconfig(KUBELET), owner=ROOT),
     "Ensure that the --kubeconfig kubelet.conf file ownership is set to root:root"),
    ("4.1.7", M, NODE, _files(_kubelet_client_ca, mode=0o644),
     "Ensure that the certificate authorities file permissions are set to 644 or more restrictive"),
    ("4.1.8", M, NODE, _files(_kubelet_client_ca, owner=ROOT),
     "Ensure that the client certificate authorities file ownership is set to root:root"),
    ("4.1.9", A, NODE, _files(_kubelet_config_file, mode=0o600),
     "If the kubelet config.yaml configuration file is being used validate permissions set to 600 or more restrictive"),
    ("4.1.10", A, NODE, _files(_kubelet_config_file, owner=ROOT),
     "If the kubelet config.yaml configuration file is being used validate file ownership is set to root:root"),
    # 4.2 Kubelet
    ("4.2.1", A, NODE, _flag(KUBELET, ("anonymous-auth", ("authentication", "anonymous", "enabled"), _is("false"))),
     "Ensure that the --anonymous-auth argument is set to false"),
    ("4.2.2", A, NODE, _flag(KUBELET, ("authorization-mode", ("authorization", "mode"), _set_without("AlwaysAllow"))),
     "Ensure that the --authorization-mode argument is not set to AlwaysAllow"),
    ("4.2.3", A, NODE, _flag(KUBELET, ("client-ca-file", ("authentication", "x509", "clientCAFile"), _set)),
     "Ensure that the --client-ca-file argument is set as appropriate"),
    ("4.2.4", M, NODE, _flag(KUBELET, ("read-only-port", ("readOnlyPort",), _unset_or("0"))),
     "Verify that if defined, the --read-only-port argument is set to 0"),
    ("4.2.5", M, NODE, _flag(KUBELET, ("streaming-connection-idle-timeout", ("streamingConnectionIdleTimeout",),
                                       _unset_or_not_zero)),
     "Ensure that the --streaming-connection-idle-timeout argument is not set to 0"),
    ("4.2.6", A, NODE, _flag(KUBELET, ("make-iptables-util-chains", ("makeIPTablesUtilChains",), _unset_or("true"))),
     "Ensure that the --make-iptables-util-chains argument is set to true"),
    ("4.2.7", M, NODE, _flag(KUBELET, ("hostname-override", _unset), na=_hostname_override_na),
     "Ensure that the --hostname-override argument is not set"),
    ("4.2.8", M, NODE, _flag(KUBELET, ("event-qps", ("eventRecordQPS",), lambda v: v is None or _at_least(0)(v))),
     "Ensure that the eventRecordQPS argument is set to a level which ensures appropriate event capture"),
    ("4.2.9", M, NODE, _flag(KUBELET, ("tls-cert-file", ("tlsCertFile",), _set),
                             ("tls-private-key-file", ("tlsPrivateKeyFile",), _set)),
     "Ensure that the --tls-cert-file and --tls-private-key-file arguments are set as appropriate"),
    ("4.2.10", A, NODE, _flag(KUBELET, ("rotate-certificates", ("rotateCertificates",), _unset_or("true")),
                              na=_rotate_certificates_na),
     "Ensure that the --rotate-certificates argument is not set to false"),
    ("4.2.11", M, NODE, _rotate_server_certificate,
     "Verify that the RotateKubeletServerCertificate argument is set to true"),
    ("4.2.12", M, NODE, _flag(KUBELET, ("tls-cipher-suites", ("tlsCipherSuites",), _subset_of(STRONG_CIPHERS_KUBELET))),
     "Ensure that the Kubelet only makes use of Strong Cryptographic Ciphers"),
    ("4.2.13", M, NODE, _flag(KUBELET, ("pod-max-pids", ("podPidsLimit",), _positive)),
     "Ensure that a limit is set on pod PIDs"),
    ("4.2.14", M, NODE, _flag(KUBELET, ("seccomp-default", ("seccompDefault",), _is("true")), na=_seccomp_na),
     "Ensure that the --seccomp-default parameter is set to true"),
    # 4.3 kube-proxy
    ("4.3.1", A, NODE, _flag(PROXY, ("metrics-bind-address", ("metricsBindAddress",), _loopback_or_unset)),
     "Ensure that the kube-proxy metrics service is bound to localhost"),
    # 5.1 RBAC and Service Accounts
    ("5.1.1", M, CA, _manual(_cluster_admin),
     "Ensure that the cluster-admin role is only used where required"),
    ("5.1.2", M, CA, _says("kubesalt grants no access to Secrets beyond the built-in roles; review yours"),
     "Minimize access to secrets"),
    ("5.1.3", M, CA, _says("kubesalt's own ClusterRoles (flanneld's) name their verbs and resources: no wildcards"),
     "Minimize wildcard use in Roles and ClusterRoles"),
    ("5.1.4", M, CA, _says("kubesalt grants no one the right to create pods beyond the built-in roles; review yours"),
     "Minimize access to create pods"),
    ("5.1.5", M, CA, _says("kubesalt leaves default service accounts as they are; CoreDNS runs with its own"),
     "Ensure that default service accounts are not actively used"),
    ("5.1.6", M, CA, _says("review which workloads need a service-account token (automountServiceAccountToken)"),
     "Ensure that Service Account Tokens are only mounted where necessary"),
    ("5.1.7", M, CA, _manual(_client_certificates),
     "Avoid use of system:masters group"),
    ("5.1.8", M, CA, _says("kubesalt grants bind, impersonate and escalate to no one beyond the built-in roles"),
     "Limit use of the Bind, Impersonate and Escalate permissions in the Kubernetes cluster"),
    ("5.1.9", M, CA, _says("kubesalt grants no one the right to create PersistentVolumes beyond the built-in roles"),
     "Minimize access to create persistent volumes"),
    ("5.1.10", M, CA, _says("nodes/proxy: the API server's kubelet client (system:kubelet-api-admin), cluster admins"),
     "Minimize access to the proxy sub-resource of nodes"),
    ("5.1.11", M, CA, _says("kubesalt approves no CSRs: the CA minion signs node certificates outside the API"),
     "Minimize access to the approval sub-resource of certificatesigningrequests objects"),
    ("5.1.12", M, CA, _says("kubesalt creates no webhook configurations and grants no access to them"),
     "Minimize access to webhook configuration objects"),
    ("5.1.13", M, CA, _says("kubesalt grants serviceaccounts/token to no one beyond the built-in roles"),
     "Minimize access to the service account token creation"),
    # 5.2 Pod Security Standards
    ("5.2.1", M, CA, _policy_control,
     "Ensure that the cluster has at least one active policy control mechanism in place"),
    ("5.2.2", M, CA, _pss("baseline", "privileged containers"),
     "Minimize the admission of privileged containers"),
    ("5.2.3", M, CA, _pss("baseline", "hostPID"),
     "Minimize the admission of containers wishing to share the host process ID namespace"),
    ("5.2.4", M, CA, _pss("baseline", "hostIPC"),
     "Minimize the admission of containers wishing to share the host IPC namespace"),
    ("5.2.5", M, CA, _pss("baseline", "hostNetwork"),
     "Minimize the admission of containers wishing to share the host network namespace"),
    ("5.2.6", M, CA, _pss("restricted", "allowPrivilegeEscalation"),
     "Minimize the admission of containers with allowPrivilegeEscalation"),
    ("5.2.7", M, CA, _pss("restricted", "containers running as root"),
     "Minimize the admission of root containers"),
    ("5.2.8", M, CA, _pss("restricted", "NET_RAW"),
     "Minimize the admission of containers with the NET_RAW capability"),
    ("5.2.9", M, CA, _pss("restricted", "added capabilities"),
     "Minimize the admission of containers with capabilities assigned"),
    ("5.2.10", M, CA, _pss("baseline", "Windows HostProcess containers"),
     "Minimize the admission of Windows HostProcess containers"),
    ("5.2.11", M, CA, _pss("baseline", "hostPath volumes"),
     "Minimize the admission of HostPath volumes"),
    ("5.2.12", M, CA, _pss("baseline", "hostPorts"),
     "Minimize the admission of containers which use HostPorts"),
    # 5.3 Network Policies and CNI
    ("5.3.1", M, CA, _network_policy,
     "Ensure that the CNI in use supports NetworkPolicies"),
    ("5.3.2", M, CA, _says("kubesalt creates no NetworkPolicies: define them per namespace"),
     "Ensure that all Namespaces have NetworkPolicies defined"),
    # 5.4 Secrets Management
    ("5.4.1", M, CA, _says("an application choice; kubesalt encrypts Secrets at rest (1.2.27, 1.2.28)"),
     "Prefer using Secrets as files over Secrets as environment variables"),
    ("5.4.2", M, CA, _says("kubesalt keeps Secrets in etcd, encrypted with secretbox; no external store"),
     "Consider external secret storage"),
    # 5.5 Extensible Admission Control
    ("5.5.1", M, CA, _says("no ImagePolicyWebhook; artifacts and preloaded images are pinned by digest"),
     "Configure Image Provenance using ImagePolicyWebhook admission controller"),
    # 5.6 General Policies
    ("5.6.1", M, CA, _says("kubesalt's add-ons live in kube-system; create namespaces for your workloads"),
     "Create administrative boundaries between resources using namespaces"),
    ("5.6.2", M, CA, _manual(_seccomp_profile),
     "Ensure that the seccomp profile is set to docker/default in your Pod definitions"),
    ("5.6.3", M, CA, _says("CoreDNS runs with a restrictive securityContext; apply one to your pods"),
     "Apply SecurityContext to your Pods and Containers"),
    ("5.6.4", M, CA, _says("kubesalt deploys nothing into the default namespace"),
     "The default namespace should not be used"),
]
# fmt: on


def _row(check):
    ident, automated, role, run, title = check
    return {"id": ident, "title": title, "automated": automated, "role": role, "run": run}


ROWS = [_row(check) for check in CHECKS]


def _section(ident):
    return ident.split(".")[0]


def _evaluate(config, minion_id, conf, live=True, sections=None, pids=None, proc_root="/proc"):
    """
    The report of node ``minion_id`` (see :py:func:`report`) over the resolved settings ``config``; ``conf(name)``
    returns the ``k8s_conf`` function ``name``. Plain values in, plain values out: no Salt needed.
    """
    node = _Node(config, minion_id, conf, live=live, proc_root=proc_root, pids=pids)
    wanted = {str(s) for s in sections} if sections else None
    rows, counts = [], {}
    for row in ROWS:
        section = _section(row["id"])
        if row["role"] not in node.roles or (wanted and section not in wanted):
            continue
        try:
            result, detail = row["run"](node)
        except _Unavailable as exc:
            result, detail = FAIL, str(exc)
        except (CommandExecutionError, OSError, ValueError, TypeError, KeyError) as exc:
            result, detail = FAIL, f"cannot evaluate: {type(exc).__name__}: {exc}"
        rows.append(
            {
                "id": row["id"],
                "title": row["title"],
                "type": "Automated" if row["automated"] else "Manual",
                "result": result,
                "detail": detail,
            }
        )
        for key in (section, "total"):
            counts.setdefault(key, dict.fromkeys(RESULTS, 0))[result] += 1
    counts = {key: counts[key] for key in sorted(counts, key=lambda k: (k == "total", k))}
    out = {
        "benchmark": BENCHMARK,
        "node": minion_id,
        "roles": sorted(node.roles),
        "kubernetes": node.version,
        "source": "live" if live else "rendered",
        "counts": counts,
        "checks": rows,
    }
    if live:
        out["processes"] = {name: process[0] if process else None for name, process in sorted(node.processes.items())}
    return out


def _sections_arg(sections):
    if sections in (None, ""):
        return None
    parts = [str(s).strip() for s in (sections if isinstance(sections, (list, tuple)) else str(sections).split(","))]
    unknown = [s for s in parts if s not in SECTIONS]
    if unknown:
        raise SaltInvocationError(f"sections: {', '.join(unknown)} unknown; the benchmark has sections 1-5")
    return parts


def _pids_arg(pids):
    if pids in (None, ""):
        return None
    parts = pids if isinstance(pids, (list, tuple)) else str(pids).split(",")
    try:
        return [int(str(p).strip()) for p in parts]
    except ValueError:
        raise SaltInvocationError(f"pids: '{pids}' is not a list of process ids") from None


def report(live=True, sections=None, pids=None, proc_root="/proc"):
    """
    Evaluate the CIS Kubernetes Benchmark v1.12 on this minion for the roles ``k8s:nodes`` gives it (see the
    module's documentation): ``{"benchmark", "node", "roles", "kubernetes", "source", "counts", "checks",
    "processes"}``, where ``checks`` is one ``{"id", "title", "type", "result", "detail"}`` per check, ``result``
    one of PASS, FAIL, MANUAL, N/A, and ``counts`` the results per section and in total. The exit code is non-zero
    when any check fails.

    live
        True (default): the running processes' flags (``/proc/<pid>/cmdline``) and the files on disk. False: the
        configuration the next state run writes (``k8s_conf``'s component specs), before converging.
    sections
        Only these sections, e.g. ``1,2`` (default: all that apply to this node).
    pids
        Look only at these process ids (live mode): the process of each component is otherwise the one whose
        executable has the component's name, anywhere in ``proc_root``. For tests that run their own daemons next
        to other people's.
    proc_root
        Where the process table is mounted (default ``/proc``).

    CLI Example:

    .. code-block:: bash

        salt '*' k8s_cis.report --out=json
        salt-call k8s_cis.report live=False sections=1,2
    """
    live = live if isinstance(live, bool) else str(live).strip().lower() not in ("false", "0", "no")
    config = __salt__["k8s.config"](validate=True)
    out = _evaluate(
        config,
        __opts__["id"],
        lambda name: __salt__[f"k8s_conf.{name}"],
        live=live,
        sections=_sections_arg(sections),
        pids=_pids_arg(pids),
        proc_root=proc_root,
    )
    if out["counts"].get("total", {}).get(FAIL):
        __context__["retcode"] = 1
    return out


def checks():
    """
    The benchmark's checks as kubesalt evaluates them: ``[{"id", "title", "type", "runs_on"}]`` (``runs_on``: the
    role whose nodes report it -- master, etcd, node (masters and workers) or ca (the CA minion)).

    CLI Example:

    .. code-block:: bash

        salt-call k8s_cis.checks --out=json
    """
    return [
        {
            "id": row["id"],
            "title": row["title"],
            "type": "Automated" if row["automated"] else "Manual",
            "runs_on": row["role"],
        }
        for row in ROWS
    ]
