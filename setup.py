"""
kubesalt: Kubernetes the hard way, as Salt formulas plus Salt execution and state modules.

``pip install .`` installs the modules as a Salt extension (loader entry point ``salt.loader``), so salt-minion and
salt-call load them without ``saltutil.sync_all``. The formulas (``formulas/``) are served by the salt-master from
its file_roots and are not part of the Python package.

One source tree: the package directories are mapped onto ``_modules/``, ``_states/``, ``_runners/``, ``_output/``,
``_beacons/`` and ``_utils/kubesalt/`` (the shared core the modules import), the same files that
``saltutil.sync_all`` (minions) and ``salt-run saltutil.sync_all`` (the master: runners, outputter) distribute from
the master's file_roots.
"""

from setuptools import setup

setup(
    name="saltext.kubesalt",
    version="0.1.0",
    description="Kubernetes the hard way with Salt: PKI, etcd, artifacts and cluster formulas",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=[
        "saltext.kubesalt",
        "saltext.kubesalt.modules",
        "saltext.kubesalt.states",
        "saltext.kubesalt.runners",
        "saltext.kubesalt.beacons",
        "saltext.kubesalt.output",
        "kubesalt",
    ],
    package_dir={
        "saltext.kubesalt": "saltext/kubesalt",
        "saltext.kubesalt.modules": "_modules",
        "saltext.kubesalt.states": "_states",
        # On the salt-master: the k8s runner (salt-run k8s.status ...) and its outputter.
        "saltext.kubesalt.runners": "_runners",
        "saltext.kubesalt.output": "_output",
        # On the minions: the certificate renewal beacon.
        "saltext.kubesalt.beacons": "_beacons",
        # Salt's loader only searches an extension's modules/states/runners... folders, not utils: the shared core
        # is a plain top-level package, importable as `kubesalt` like after a sync (see _utils/kubesalt/__init__.py).
        "kubesalt": "_utils/kubesalt",
    },
    # Supported and tested: Salt 3008 (3008.3 pinned in tests/requirements.txt). Older lines are not claimed: see
    # README "Supported versions".
    install_requires=["salt>=3008.3,<3009", "cryptography>=41", "PyYAML", "requests"],
    entry_points={"salt.loader": ["saltext.kubesalt = saltext.kubesalt"]},
)
