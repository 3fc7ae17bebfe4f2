"""
The CIS Kubernetes Benchmark v1.12 as kubesalt evaluates it: one row per check, as data.

``k8s_cis`` evaluates the rows on a node; this module holds the table (:py:data:`TABLE`, read once into
:py:data:`ROWS`) and the tests a flag's value is held to. Ids, titles and Automated/Manual are kube-bench's
``cfg/cis-1.12``.

Each check is two lines of :py:data:`TABLE`: ``<id> <A|M> <role> <kind> <arguments>``, then its title, indented.
``A`` is Automated, ``M`` Manual; the role is the one whose nodes report it (``master``, ``etcd``, ``node``: masters
and workers, ``ca``: the CA minion). The kinds and their arguments:

- ``files <paths> mode=<octal>|owner=<user:group>``: every path of ``<paths>`` (a name k8s_cis resolves:
  ``unit:<component>``, ``kubeconfig:<identity>``, ``cni``, ``admin``, ...) is within the mode, or has the owner
  (``owner=etcd-user``: the user etcd runs as);
- ``flag <component> <flag>[/<config.path>]=<test>[:<argument>] ... [na=<reason>]``: each flag of the component (or,
  when it is not given, the field at ``config.path`` of its ``--config`` file) passes the test (:py:data:`TESTS`);
  ``na=`` names the judgement that turns a failure into N/A;
- ``admission <plugin> <reason>``: the API server enables the admission plugin, else N/A for :py:data:`REASONS`;
- ``check <name>``: a check k8s_cis implements on its own;
- ``manual <name>``: a review for a person, with what kubesalt does (k8s_cis words it);
- ``says <text>``: a review for a person, with ``<text>``;
- ``pss <level> <what>``: whether PodSecurity enforces ``<level>``, the lowest Pod Security Standard that forbids
  ``<what>``.
"""

# 1.2.29 and 4.2.12: the strong suites the benchmark accepts (TLS 1.3 suites are not configurable in Go).
STRONG_CIPHERS = {
    "apiserver": {
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
    },
    "kubelet": {
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    },
}
# Why an admission plugin the benchmark asks for is not enabled (``admission`` rows).
REASONS = {
    "deny-external-ips": (
        "not enabled by kubesalt: Service externalIPs stay available to whoever may create Services (CVE-2020-8554 "
        "matters with untrusted tenants); add it with k8s:apiserver:extra_flags "
        "['--enable-admission-plugins=DenyServiceExternalIPs'] (Kubernetes >= 1.21)"
    ),
    "event-rate-limit": (
        "not enabled by kubesalt: its configuration API is alpha (eventratelimit.admission.k8s.io/v1alpha1); the API "
        "server's --max-requests-inflight limits still apply"
    ),
    "always-pull": (
        "not enabled by kubesalt: air-gapped nodes run images preloaded into containerd "
        "(k8s:container_runtime:images), which AlwaysPullImages would make unusable"
    ),
}
KINDS = ("files", "flag", "admission", "check", "manual", "says", "pss")
ROLES = ("master", "etcd", "node", "ca")

TABLE = """
# 1.1 Control Plane Node Configuration Files
1.1.1   A master files unit:kube-apiserver mode=600
        Ensure that the API server pod specification file permissions are set to 600 or more restrictive
1.1.2   A master files unit:kube-apiserver owner=root:root
        Ensure that the API server pod specification file ownership is set to root:root
1.1.3   A master files unit:kube-controller-manager mode=600
        Ensure that the controller manager pod specification file permissions are set to 600 or more restrictive
1.1.4   A master files unit:kube-controller-manager owner=root:root
        Ensure that the controller manager pod specification file ownership is set to root:root
1.1.5   A master files unit:kube-scheduler mode=600
        Ensure that the scheduler pod specification file permissions are set to 600 or more restrictive
1.1.6   A master files unit:kube-scheduler owner=root:root
        Ensure that the scheduler pod specification file ownership is set to root:root
1.1.7   A etcd   files unit:etcd mode=600
        Ensure that the etcd pod specification file permissions are set to 600 or more restrictive
1.1.8   A etcd   files unit:etcd owner=root:root
        Ensure that the etcd pod specification file ownership is set to root:root
1.1.9   M master files cni mode=600
        Ensure that the Container Network Interface file permissions are set to 600 or more restrictive
1.1.10  M master files cni owner=root:root
        Ensure that the Container Network Interface file ownership is set to root:root
1.1.11  A etcd   files etcd-data-dir mode=700
        Ensure that the etcd data directory permissions are set to 700 or more restrictive
1.1.12  A etcd   files etcd-data-dir owner=etcd-user
        Ensure that the etcd data directory ownership is set to etcd:etcd
1.1.13  A master files admin mode=600
        Ensure that the default administrative credential file permissions are set to 600
1.1.14  A master files admin owner=root:root
        Ensure that the default administrative credential file ownership is set to root:root
1.1.15  A master files kubeconfig:kube-scheduler mode=600
        Ensure that the scheduler.conf file permissions are set to 600 or more restrictive
1.1.16  A master files kubeconfig:kube-scheduler owner=root:root
        Ensure that the scheduler.conf file ownership is set to root:root
1.1.17  A master files kubeconfig:kube-controller-manager mode=600
        Ensure that the controller-manager.conf file permissions are set to 600 or more restrictive
1.1.18  A master files kubeconfig:kube-controller-manager owner=root:root
        Ensure that the controller-manager.conf file ownership is set to root:root
1.1.19  A master files pki owner=root:root
        Ensure that the Kubernetes PKI directory and file ownership is set to root:root
1.1.20  M master files pki-certificates mode=644
        Ensure that the Kubernetes PKI certificate file permissions are set to 644 or more restrictive
1.1.21  M master files pki-keys mode=600
        Ensure that the Kubernetes PKI key file permissions are set to 600
# 1.2 API Server
1.2.1   M master flag kube-apiserver anonymous-auth=is:false
        Ensure that the --anonymous-auth argument is set to false
1.2.2   A master flag kube-apiserver token-auth-file=unset
        Ensure that the --token-auth-file parameter is not set
1.2.3   M master admission DenyServiceExternalIPs deny-external-ips
        Ensure that the --DenyServiceExternalIPs is set
1.2.4   A master flag kube-apiserver kubelet-client-certificate=set kubelet-client-key=set
        Ensure that the --kubelet-client-certificate and --kubelet-client-key arguments are set as appropriate
1.2.5   A master flag kube-apiserver kubelet-certificate-authority=set
        Ensure that the --kubelet-certificate-authority argument is set as appropriate
1.2.6   A master flag kube-apiserver authorization-mode=set-without:AlwaysAllow
        Ensure that the --authorization-mode argument is not set to AlwaysAllow
1.2.7   A master flag kube-apiserver authorization-mode=has:Node
        Ensure that the --authorization-mode argument includes Node
1.2.8   A master flag kube-apiserver authorization-mode=has:RBAC
        Ensure that the --authorization-mode argument includes RBAC
1.2.9   M master admission EventRateLimit event-rate-limit
        Ensure that the admission control plugin EventRateLimit is set
1.2.10  A master flag kube-apiserver enable-admission-plugins=unset-or-without:AlwaysAdmit
        Ensure that the admission control plugin AlwaysAdmit is not set
1.2.11  M master admission AlwaysPullImages always-pull
        Ensure that the admission control plugin AlwaysPullImages is set
1.2.12  A master flag kube-apiserver disable-admission-plugins=unset-or-without:ServiceAccount
        Ensure that the admission control plugin ServiceAccount is set
1.2.13  A master flag kube-apiserver disable-admission-plugins=unset-or-without:NamespaceLifecycle
        Ensure that the admission control plugin NamespaceLifecycle is set
1.2.14  A master flag kube-apiserver enable-admission-plugins=has:NodeRestriction
        Ensure that the admission control plugin NodeRestriction is set
1.2.15  A master flag kube-apiserver profiling=is:false
        Ensure that the --profiling argument is set to false
1.2.16  A master flag kube-apiserver audit-log-path=set
        Ensure that the --audit-log-path argument is set
1.2.17  A master flag kube-apiserver audit-log-maxage=at-least:30
        Ensure that the --audit-log-maxage argument is set to 30 or as appropriate
1.2.18  A master flag kube-apiserver audit-log-maxbackup=at-least:10
        Ensure that the --audit-log-maxbackup argument is set to 10 or as appropriate
1.2.19  A master flag kube-apiserver audit-log-maxsize=at-least:100
        Ensure that the --audit-log-maxsize argument is set to 100 or as appropriate
1.2.20  M master check request-timeout
        Ensure that the --request-timeout argument is set as appropriate
1.2.21  A master flag kube-apiserver service-account-lookup=unset-or:true
        Ensure that the --service-account-lookup argument is set to true
1.2.22  A master flag kube-apiserver service-account-key-file=set
        Ensure that the --service-account-key-file argument is set as appropriate
1.2.23  A master flag kube-apiserver etcd-certfile=set etcd-keyfile=set
        Ensure that the --etcd-certfile and --etcd-keyfile arguments are set as appropriate
1.2.24  A master flag kube-apiserver tls-cert-file=set tls-private-key-file=set
        Ensure that the --tls-cert-file and --tls-private-key-file arguments are set as appropriate
1.2.25  A master flag kube-apiserver client-ca-file=set
        Ensure that the --client-ca-file argument is set as appropriate
1.2.26  A master flag kube-apiserver etcd-cafile=set
        Ensure that the --etcd-cafile argument is set as appropriate
1.2.27  M master flag kube-apiserver encryption-provider-config=set
        Ensure that the --encryption-provider-config argument is set as appropriate
1.2.28  M master check encryption
        Ensure that encryption providers are appropriately configured
1.2.29  M master flag kube-apiserver tls-cipher-suites=strong-ciphers:apiserver
        Ensure that the API Server only makes use of Strong Cryptographic Ciphers
1.2.30  A master flag kube-apiserver service-account-extend-token-expiration=is:false
        Ensure that the --service-account-extend-token-expiration parameter is set to false
# 1.3 Controller Manager
1.3.1   M master flag kube-controller-manager terminated-pod-gc-threshold=positive
        Ensure that the --terminated-pod-gc-threshold argument is set as appropriate
1.3.2   A master flag kube-controller-manager profiling=is:false
        Ensure that the --profiling argument is set to false
1.3.3   A master flag kube-controller-manager use-service-account-credentials=is:true
        Ensure that the --use-service-account-credentials argument is set to true
1.3.4   A master flag kube-controller-manager service-account-private-key-file=set
        Ensure that the --service-account-private-key-file argument is set as appropriate
1.3.5   A master flag kube-controller-manager root-ca-file=set
        Ensure that the --root-ca-file argument is set as appropriate
1.3.6   A master flag kube-controller-manager feature-gates=unset-or-without:RotateKubeletServerCertificate=false
        Ensure that the RotateKubeletServerCertificate argument is set to true
1.3.7   A master flag kube-controller-manager bind-address=is:127.0.0.1
        Ensure that the --bind-address argument is set to 127.0.0.1
# 1.4 Scheduler
1.4.1   A master flag kube-scheduler profiling=is:false
        Ensure that the --profiling argument is set to false
1.4.2   A master flag kube-scheduler bind-address=is:127.0.0.1
        Ensure that the --bind-address argument is set to 127.0.0.1
# 2 etcd
2.1     A etcd   flag etcd cert-file=set key-file=set
        Ensure that the --cert-file and --key-file arguments are set as appropriate
2.2     A etcd   flag etcd client-cert-auth=is:true
        Ensure that the --client-cert-auth argument is set to true
2.3     A etcd   flag etcd auto-tls=unset-or:false
        Ensure that the --auto-tls argument is not set to true
2.4     A etcd   flag etcd peer-cert-file=set peer-key-file=set
        Ensure that the --peer-cert-file and --peer-key-file arguments are set as appropriate
2.5     A etcd   flag etcd peer-client-cert-auth=is:true
        Ensure that the --peer-client-cert-auth argument is set to true
2.6     A etcd   flag etcd peer-auto-tls=unset-or:false
        Ensure that the --peer-auto-tls argument is not set to true
2.7     M etcd   check etcd-unique-ca
        Ensure that a unique Certificate Authority is used for etcd
# 3 Control Plane Configuration
3.1.1   M master manual client-certificates
        Client certificate authentication should not be used for users
3.1.2   M master says kubesalt gives no person a service-account token; projected tokens expire (1.2.30)
        Service account token authentication should not be used for users
3.1.3   M master says no bootstrap tokens: nodes join with certificates the CA minion issues them
        Bootstrap token authentication should not be used for users
3.2.1   M master flag kube-apiserver audit-policy-file=set
        Ensure that a minimal audit policy is created
3.2.2   M master check audit-policy
        Ensure that the audit policy covers key security concerns
# 4.1 Worker Node Configuration Files
4.1.1   A node   files unit:kubelet mode=600
        Ensure that the kubelet service file permissions are set to 600 or more restrictive
4.1.2   A node   files unit:kubelet owner=root:root
        Ensure that the kubelet service file ownership is set to root:root
4.1.3   M node   files kubeconfig:kube-proxy mode=600
        If proxy kubeconfig file exists ensure permissions are set to 600 or more restrictive
4.1.4   M node   files kubeconfig:kube-proxy owner=root:root
        If proxy kubeconfig file exists ensure ownership is set to root:root
4.1.5   A node   files kubeconfig:kubelet mode=600
        Ensure that the --kubeconfig kubelet.conf file permissions are set to 600 or more restrictive
4.1.6   A node   files kubeconfig:kubelet owner=root:root
        Ensure that the --kubeconfig kubelet.conf file ownership is set to root:root
4.1.7   M node   files kubelet-client-ca mode=644
        Ensure that the certificate authorities file permissions are set to 644 or more restrictive
4.1.8   M node   files kubelet-client-ca owner=root:root
        Ensure that the client certificate authorities file ownership is set to root:root
4.1.9   A node   files kubelet-config mode=600
        If the kubelet config.yaml configuration file is being used validate permissions set to 600 or more restrictive
4.1.10  A node   files kubelet-config owner=root:root
        If the kubelet config.yaml configuration file is being used validate file ownership is set to root:root
# 4.2 Kubelet
4.2.1   A node   flag kubelet anonymous-auth/authentication.anonymous.enabled=is:false
        Ensure that the --anonymous-auth argument is set to false
4.2.2   A node   flag kubelet authorization-mode/authorization.mode=set-without:AlwaysAllow
        Ensure that the --authorization-mode argument is not set to AlwaysAllow
4.2.3   A node   flag kubelet client-ca-file/authentication.x509.clientCAFile=set
        Ensure that the --client-ca-file argument is set as appropriate
4.2.4   M node   flag kubelet read-only-port/readOnlyPort=unset-or:0
        Verify that if defined, the --read-only-port argument is set to 0
4.2.5   M node   flag kubelet streaming-connection-idle-timeout/streamingConnectionIdleTimeout=unset-or-not-zero
        Ensure that the --streaming-connection-idle-timeout argument is not set to 0
4.2.6   A node   flag kubelet make-iptables-util-chains/makeIPTablesUtilChains=unset-or:true
        Ensure that the --make-iptables-util-chains argument is set to true
4.2.7   M node   flag kubelet hostname-override=unset na=hostname-override
        Ensure that the --hostname-override argument is not set
4.2.8   M node   flag kubelet event-qps/eventRecordQPS=unset-or-at-least:0
        Ensure that the eventRecordQPS argument is set to a level which ensures appropriate event capture
4.2.9   M node   flag kubelet tls-cert-file/tlsCertFile=set tls-private-key-file/tlsPrivateKeyFile=set
        Ensure that the --tls-cert-file and --tls-private-key-file arguments are set as appropriate
4.2.10  A node   flag kubelet rotate-certificates/rotateCertificates=unset-or:true na=rotate-certificates
        Ensure that the --rotate-certificates argument is not set to false
4.2.11  M node   check rotate-server-certificate
        Verify that the RotateKubeletServerCertificate argument is set to true
4.2.12  M node   flag kubelet tls-cipher-suites/tlsCipherSuites=strong-ciphers:kubelet
        Ensure that the Kubelet only makes use of Strong Cryptographic Ciphers
4.2.13  M node   flag kubelet pod-max-pids/podPidsLimit=positive
        Ensure that a limit is set on pod PIDs
4.2.14  M node   flag kubelet seccomp-default/seccompDefault=is:true na=seccomp-default
        Ensure that the --seccomp-default parameter is set to true
# 4.3 kube-proxy
4.3.1   A node   flag kube-proxy metrics-bind-address/metricsBindAddress=loopback-or-unset
        Ensure that the kube-proxy metrics service is bound to localhost
# 5.1 RBAC and Service Accounts
5.1.1   M ca manual cluster-admin
        Ensure that the cluster-admin role is only used where required
5.1.2   M ca says kubesalt grants no access to Secrets beyond the built-in roles; review yours
        Minimize access to secrets
5.1.3   M ca says kubesalt's own ClusterRoles (flanneld's) name their verbs and resources: no wildcards
        Minimize wildcard use in Roles and ClusterRoles
5.1.4   M ca says kubesalt grants no one the right to create pods beyond the built-in roles; review yours
        Minimize access to create pods
5.1.5   M ca says kubesalt leaves default service accounts as they are; CoreDNS runs with its own
        Ensure that default service accounts are not actively used
5.1.6   M ca says review which workloads need a service-account token (automountServiceAccountToken)
        Ensure that Service Account Tokens are only mounted where necessary
5.1.7   M ca manual client-certificates
        Avoid use of system:masters group
5.1.8   M ca says kubesalt grants bind, impersonate and escalate to no one beyond the built-in roles
        Limit use of the Bind, Impersonate and Escalate permissions in the Kubernetes cluster
5.1.9   M ca says kubesalt grants no one the right to create PersistentVolumes beyond the built-in roles
        Minimize access to create persistent volumes
5.1.10  M ca says nodes/proxy: the API server's kubelet client (system:kubelet-api-admin), cluster admins
        Minimize access to the proxy sub-resource of nodes
5.1.11  M ca says kubesalt approves no CSRs: the CA minion signs node certificates outside the API
        Minimize access to the approval sub-resource of certificatesigningrequests objects
5.1.12  M ca says kubesalt creates no webhook configurations and grants no access to them
        Minimize access to webhook configuration objects
5.1.13  M ca says kubesalt grants serviceaccounts/token to no one beyond the built-in roles
        Minimize access to the service account token creation
# 5.2 Pod Security Standards
5.2.1   M ca check policy-control
        Ensure that the cluster has at least one active policy control mechanism in place
5.2.2   M ca pss baseline privileged containers
        Minimize the admission of privileged containers
5.2.3   M ca pss baseline hostPID
        Minimize the admission of containers wishing to share the host process ID namespace
5.2.4   M ca pss baseline hostIPC
        Minimize the admission of containers wishing to share the host IPC namespace
5.2.5   M ca pss baseline hostNetwork
        Minimize the admission of containers wishing to share the host network namespace
5.2.6   M ca pss restricted allowPrivilegeEscalation
        Minimize the admission of containers with allowPrivilegeEscalation
5.2.7   M ca pss restricted containers running as root
        Minimize the admission of root containers
5.2.8   M ca pss restricted NET_RAW
        Minimize the admission of containers with the NET_RAW capability
5.2.9   M ca pss restricted added capabilities
        Minimize the admission of containers with capabilities assigned
5.2.10  M ca pss baseline Windows HostProcess containers
        Minimize the admission of Windows HostProcess containers
5.2.11  M ca pss baseline hostPath volumes
        Minimize the admission of HostPath volumes
5.2.12  M ca pss baseline hostPorts
        Minimize the admission of containers which use HostPorts
# 5.3 Network Policies and CNI
5.3.1   M ca check network-policy
        Ensure that the CNI in use supports NetworkPolicies
5.3.2   M ca says kubesalt creates no NetworkPolicies: define them per namespace
        Ensure that all Namespaces have NetworkPolicies defined
# 5.4 Secrets Management
5.4.1   M ca says an application choice; kubesalt encrypts Secrets at rest (1.2.27, 1.2.28)
        Prefer using Secrets as files over Secrets as environment variables
5.4.2   M ca says kubesalt keeps Secrets in etcd, encrypted with secretbox; no external store
        Consider external secret storage
# 5.5 Extensible Admission Control
5.5.1   M ca says no ImagePolicyWebhook; artifacts and preloaded images are pinned by digest
        Configure Image Provenance using ImagePolicyWebhook admission controller
# 5.6 General Policies
5.6.1   M ca says kubesalt's add-ons live in kube-system; create namespaces for your workloads
        Create administrative boundaries between resources using namespaces
5.6.2   M ca manual seccomp-profile
        Ensure that the seccomp profile is set to docker/default in your Pod definitions
5.6.3   M ca says CoreDNS runs with a restrictive securityContext; apply one to your pods
        Apply SecurityContext to your Pods and Containers
5.6.4   M ca says kubesalt deploys nothing into the default namespace
        The default namespace should not be used
"""


# --------------------------------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------------------------------
def norm(value):
    """A flag or config value as compared: booleans as ``true``/``false``, text stripped and lowercase."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).strip().lower()


def items(value):
    """The items of a list value: a comma-separated flag, a YAML list, a map as ``key=value``."""
    if value is None:
        return []
    if isinstance(value, dict):
        return [f"{k}={norm(v)}" for k, v in value.items()]
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value]
    return [part.strip() for part in str(value).split(",") if part.strip()]


def show(value):
    """A value as a report's detail shows it."""
    if isinstance(value, bool):
        return norm(value)
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return ",".join(items(value))
    return str(value)


def _at_least(value, number):
    try:
        return int(str(value)) >= number
    except ValueError:
        return False


def _loopback(value):
    host = str(value).rsplit(":", 1)[0].strip("[]")
    return host in ("127.0.0.1", "::1", "localhost")


# The tests of a ``flag`` row: name -> fn(argument) -> fn(value; None when not set) -> bool.
TESTS = {
    "is": lambda arg: lambda v: v is not None and norm(v) == arg,
    "unset-or": lambda arg: lambda v: v is None or norm(v) == arg,
    "set": lambda arg: lambda v: v is not None and norm(v) != "",
    "unset": lambda arg: lambda v: v is None,
    "has": lambda arg: lambda v: arg in items(v),
    "set-without": lambda arg: lambda v: v is not None and arg not in items(v),
    "unset-or-without": lambda arg: lambda v: arg not in items(v),
    "at-least": lambda arg: lambda v: v is not None and _at_least(v, int(arg)),
    "unset-or-at-least": lambda arg: lambda v: v is None or _at_least(v, int(arg)),
    "positive": lambda arg: lambda v: v is not None and _at_least(v, 1),
    "strong-ciphers": lambda arg: lambda v: bool(items(v)) and set(items(v)) <= STRONG_CIPHERS[arg],
    "unset-or-not-zero": lambda arg: lambda v: v is None or norm(v) not in ("0", "0s"),
    "loopback-or-unset": lambda arg: lambda v: v is None or _loopback(v),
}


# --------------------------------------------------------------------------------------------------------------------
# Reading the table
# --------------------------------------------------------------------------------------------------------------------
def _flag_item(word, where):
    """``flag[/config.path]=test[:argument]`` -> ``(flag, config path or None, test name, argument)``."""
    target, sep, test = word.partition("=")
    name, arg = test.split(":", 1) if ":" in test else (test, None)
    if not sep or name not in TESTS:
        raise ValueError(f"{where}: '{word}' is not <flag>[/<config.path>]=<test>[:<argument>] with a known test")
    flag, _, path = target.partition("/")
    return flag, tuple(path.split(".")) if path else None, name, arg


def _arguments(kind, words, where):
    if kind == "files":
        option, _, value = (words[1] if len(words) == 2 else "").partition("=")
        if option not in ("mode", "owner") or not value or (option == "mode" and value.strip("01234567")):
            raise ValueError(f"{where}: files takes <paths> mode=<octal> or owner=<owner>")
        return {"paths": words[0], option: int(value, 8) if option == "mode" else value}
    if kind == "flag":
        na = [w.removeprefix("na=") for w in words if w.startswith("na=")]
        flags = [_flag_item(w, where) for w in words[1:] if not w.startswith("na=")]
        return {"component": words[0], "items": flags, "na": na[0] if na else None}
    if kind == "admission":
        if len(words) != 2 or words[1] not in REASONS:
            raise ValueError(f"{where}: admission takes <plugin> <reason>, a reason one of {', '.join(REASONS)}")
        return {"plugin": words[0], "reason": REASONS[words[1]]}
    if kind == "pss":
        return {"level": words[0], "what": " ".join(words[1:])}
    if kind == "says":
        return {"text": " ".join(words)}
    return {"name": words[0]}


def _row(head, title):
    ident, *fields = head.split()
    kind_of, role, kind, *words = fields + [""] * (3 - len(fields))
    if kind_of not in ("A", "M") or role not in ROLES or kind not in KINDS:
        raise ValueError(f"CIS check {ident}: '{head}' is not '<id> <A|M> <role> <kind> <arguments>'")
    if not words:
        raise ValueError(f"CIS check {ident}: {kind} takes arguments")
    row = {"id": ident, "automated": kind_of == "A", "role": role, "kind": kind, "title": title}
    return row | _arguments(kind, words, f"CIS check {ident}")


def parse(text):
    """The rows of a table in the form of :py:data:`TABLE`: ``[{"id", "automated", "role", "kind", "title", ...}]``
    with each kind's arguments; a malformed row raises ValueError naming it."""
    rows, head = [], None
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if not line[0].isspace():
            if head:
                raise ValueError(f"CIS check {head.split()[0]}: no title (an indented line) after '{head}'")
            head = line
        elif head is None:
            raise ValueError(f"CIS table: the title '{line.strip()}' follows no check")
        else:
            rows.append(_row(head, line.strip()))
            head = None
    if head:
        raise ValueError(f"CIS check {head.split()[0]}: no title (an indented line) after '{head}'")
    return rows


ROWS = parse(TABLE)
