"""The master-side functions an orchestration's render calls for k8s/extensions.jinja (``cp.list_master``,
``cp.hash_file``), backed by Salt's own local file client (``salt.fileclient.FSClient``, what those functions use on
a master, whose orchestrations render with ``file_client: local``) over the given master options' file_roots. For
render tests that call Salt's Jinja renderer directly, without a running master."""

import salt.fileclient


def master_functions(opts):
    client = salt.fileclient.FSClient(opts)
    return {
        "cp.list_master": lambda saltenv="base", prefix="": client.file_list(saltenv, prefix),
        "cp.hash_file": lambda path, saltenv="base": client.hash_file(path, saltenv),
    }
