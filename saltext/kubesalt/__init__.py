"""
kubesalt as a Salt extension.

``pip install .`` installs the execution modules from ``_modules/`` as ``saltext.kubesalt.modules`` and the state
modules from ``_states/`` as ``saltext.kubesalt.states`` (see setup.py); Salt's loader finds them through the
``salt.loader`` entry point, which names this package. No ``saltutil.sync_all`` is needed on a minion that has it.
"""

__version__ = "0.1.0"
