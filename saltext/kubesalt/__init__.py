"""
kubesalt as a Salt extension.

``pip install .`` installs the execution modules from ``_modules/`` as ``saltext.kubesalt.modules``, the state
modules from ``_states/`` as ``saltext.kubesalt.states``, the certificate beacon from ``_beacons/`` as
``saltext.kubesalt.beacons``, and -- for the salt-master -- the ``k8s`` runner and ``kubesalt`` outputter from
``_runners/`` and ``_output/`` (see setup.py); Salt's loader finds them through the ``salt.loader`` entry point, which
names this package. No ``saltutil.sync_all`` is needed where it is installed.
"""

__version__ = "0.1.0"
