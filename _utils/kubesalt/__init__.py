"""
kubesalt's shared core: plain Python that kubesalt's execution modules, state modules and runners import.

Salt loads every file of ``_modules/`` and ``_states/`` on its own, so code two of them need lives here, once, and
each of them imports it (``from kubesalt import topology``). Nothing in this package reads Salt's dunders
(``__salt__``, ``__opts__``, ``__pillar__``): it takes plain values, and the unit tests call it directly.

How it reaches a minion, by install route:

* **Synced from the master's file_roots** (``salt://_utils/kubesalt/``): ``saltutil.sync_utils`` (or ``sync_all``,
  highstate, the ``k8s.cluster`` orchestration) copies it into the minion's ``extmods/utils/``, which Salt's loader
  puts on ``sys.path`` while it imports execution, state and runner modules.
* **Installed with pip** (``pip install .``, the Salt extension): ``setup.py`` installs it as the top-level package
  ``kubesalt`` next to ``saltext.kubesalt``.

A minion that runs jobs in threads (``multiprocessing: False``) keeps the first imported copy in ``sys.modules``:
restart it after syncing a new kubesalt. With Salt's default (a process per job) every job imports the synced files,
as long as the minion's main process, which the job processes are forked from, holds no copy: kubesalt's beacon, the
one piece of kubesalt that runs there, drops it after each check (``_beacons/k8s_certs.py``).
"""
