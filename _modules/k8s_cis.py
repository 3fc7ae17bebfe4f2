"""
The CIS Kubernetes Benchmark v1.12 on one kubesalt node: ``salt '*' k8s_cis.report``.

Every check of the benchmark (ids, titles and Automated/Manual as in aquasecurity/kube-bench ``cfg/cis-1.12``) that
concerns a component running on this node, by its roles in ``k8s:nodes``:

- section 1 (control plane) on masters -- its etcd rows (1.1.7, 1.1.8, 1.1.11, 1.1.12) on etcd members;
- section 2 (etcd) on etcd members;
- section 3 (control plane configuration) on masters, section 5 (policies) on the CA minion, which applies the
  cluster objects: mostly reviews for a person, reported ``MANUAL`` with what kubesalt does;
- section 4 (worker nodes) on every master and worker (masters run a kubelet too).

The checks are the rows of a table, ``kubesalt.cis_checks`` (one of a handful of kinds each: file modes and
owners, flag values, admission plugins, reviews); this module reads the node and evaluates them.

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

from kubesalt import cis_checks, files, pki

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
# Check builders: each returns fn(node) -> (result, detail)
# --------------------------------------------------------------------------------------------------------------------
def _flag(component, items, na=None):
    """Every ``(flag, config path, test, argument)`` of ``items`` (see ``kubesalt.cis_checks``) must hold for
    ``component``'s value. ``na(node, values)`` may turn a failure into N/A by returning the reason."""

    def run(node):
        comp = node.component(component)
        shown, values, ok = [], [], True
        for flag, path, test, argument in items:
            value, where = comp.value(flag, path)
            values.append(value)
            ok = ok and cis_checks.TESTS[test](argument)(value)
            shown.append(f"{where}={cis_checks.show(value)}" if value is not None else f"{where} not set")
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
    if values and cis_checks.norm(values[0]) == "false":
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


def _rotate_server_certificate(node):
    comp = node.component("kubelet")
    gates = comp.flag("feature-gates")
    if gates is not None and "RotateKubeletServerCertificate=false" in [
        i.replace(" ", "") for i in cis_checks.items(gates)
    ]:
        return FAIL, f"--feature-gates={gates}"
    value, where = comp.value(None, ("featureGates", "RotateKubeletServerCertificate"))
    if value is not None and cis_checks.norm(value) == "false":
        return FAIL, f"{where}=false"
    return PASS, (
        "RotateKubeletServerCertificate not disabled; kubesalt issues and renews the kubelet's serving certificate "
        "itself (serverTLSBootstrap off)"
    )


def _request_timeout(node):
    value = node.component("kube-apiserver").flag("request-timeout")
    return MANUAL, (f"--request-timeout={value}" if value else "--request-timeout not set: the default 60s")


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
# The benchmark (kube-bench cfg/cis-1.12): the rows of kubesalt.cis_checks, each resolved to its evaluation
# --------------------------------------------------------------------------------------------------------------------
# Where the files of a ``files`` row are: paths(node) and what a path is called in a detail (``kubesalt.cis_checks``).
PATHS = {
    "cni": (_cni_files, "CNI file"),
    "etcd-data-dir": (_etcd_data_dir, "file"),
    "admin": (_admin_files, "admin kubeconfig"),
    "pki": (_pki_tree, "PKI file"),
    "pki-certificates": (_pki_suffix(".crt"), "certificate"),
    "pki-keys": (_pki_suffix(".key"), "key"),
    "kubelet-client-ca": (_kubelet_client_ca, "file"),
    "kubelet-config": (_kubelet_config_file, "file"),
}
OWNERS = {"etcd-user": _etcd_owner}
# What turns a failed ``flag`` row into N/A, the checks of ``check`` rows and the reviews of ``manual`` rows.
NOT_APPLICABLE = {
    "hostname-override": _hostname_override_na,
    "rotate-certificates": _rotate_certificates_na,
    "seccomp-default": _seccomp_na,
}
CHECKS = {
    "request-timeout": _request_timeout,
    "encryption": _encryption,
    "etcd-unique-ca": _etcd_unique_ca,
    "audit-policy": _audit_policy,
    "rotate-server-certificate": _rotate_server_certificate,
    "policy-control": _policy_control,
    "network-policy": _network_policy,
}
REVIEWS = {
    "client-certificates": _client_certificates,
    "cluster-admin": _cluster_admin,
    "seccomp-profile": _seccomp_profile,
}


def _paths(name):
    """``(paths(node), what)`` of a ``files`` row's ``<paths>``: a name of PATHS, ``unit:<component>`` (its systemd
    unit) or ``kubeconfig:<identity>``."""
    kind, _, arg = name.partition(":")
    if kind == "unit" and arg not in COMPONENTS:
        raise ValueError(f"CIS table: {name}: {arg} is not a component ({', '.join(COMPONENTS)})")
    if kind == "unit":
        return (lambda node: sorted(node.conf("unit_file")(node.config, node.specs[arg]))), "file"
    if kind == "kubeconfig":
        return (lambda node: [node.conf("kubeconfig_path")(node.config, arg)]), "file"
    return PATHS[name]


def _check(row):
    """The evaluation fn(node) -> (result, detail) of a row of ``kubesalt.cis_checks.ROWS``."""
    kind = row["kind"]
    if row.get("component", "kube-apiserver") not in COMPONENTS:
        raise ValueError(f"CIS check {row['id']}: {row['component']} is not a component ({', '.join(COMPONENTS)})")
    if row.get("level", "baseline") not in POD_SECURITY_LEVELS:
        raise ValueError(f"CIS check {row['id']}: {row['level']} is not a Pod Security level")
    if kind == "files":
        paths, what = _paths(row["paths"])
        owner = OWNERS.get(row.get("owner"), row.get("owner"))
        return _files(paths, mode=row.get("mode"), owner=owner, what=what)
    if kind == "flag":
        return _flag(row["component"], row["items"], na=NOT_APPLICABLE[row["na"]] if row["na"] else None)
    if kind == "admission":
        items = [("enable-admission-plugins", None, "has", row["plugin"])]
        return _flag("kube-apiserver", items, na=lambda node, values: row["reason"])
    if kind == "check":
        return CHECKS[row["name"]]
    if kind == "manual":
        return _manual(REVIEWS[row["name"]])
    if kind == "pss":
        return _pss(row["level"], row["what"])
    return _manual(lambda node: row["text"])


# Every row resolved once, when the module loads: a name the table gives that this module lacks fails here.
ROWS = [{**row, "run": _check(row)} for row in cis_checks.ROWS]


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
