"""Render a reactor SLS of the formula as the salt-master's reactor does (Salt's Jinja, then YAML, with the tag, the
event data and master options), for the unit tests of what a reactor does with an event."""

import salt.config
import salt.utils.templates
import salt.utils.yaml

from tests.support.loader import ROOT

REACTORS = ROOT / "formulas" / "k8s" / "reactor"


def master_opts(directory):
    """The options a salt-master renders reactor SLS files with (``directory`` holds its config file)."""
    (directory / "master").write_text(salt.utils.yaml.safe_dump({"root_dir": str(directory), "file_client": "local"}))
    return salt.config.master_config(str(directory / "master"))


def renderer(name, opts):
    """render(tag, data) -> the states reactor ``name`` (k8s/reactor/<name>.sls) makes of an event."""
    template = (REACTORS / f"{name}.sls").read_text()

    def render(tag, data):
        context = {"tag": tag, "data": data, "opts": opts, "saltenv": "base", "sls": "reactor"}
        return salt.utils.yaml.safe_load(salt.utils.templates.render_jinja_tmpl(template, context)) or {}

    return render
