"""conf/master.d/kubesalt.conf: the options kubesalt's security model rests on are stated, valid Salt options, and at
least as strict as Salt's own defaults."""

import salt.config

from tests.support.master_conf import MASTER_CONF

REQUIRED = {"auto_accept": False, "open_mode": False, "minimum_auth_version": 3, "sign_pub_messages": True}


def test_the_master_config_states_the_salt_options_the_security_model_needs():
    for key, value in REQUIRED.items():
        assert MASTER_CONF.get(key) == value, key


def test_every_option_is_one_salt_knows_with_the_type_it_expects():
    for key, value in MASTER_CONF.items():
        assert key in salt.config.VALID_OPTS, key
        expected = salt.config.VALID_OPTS[key]
        if isinstance(expected, type):
            assert isinstance(value, expected), (key, value)


def test_no_option_is_weaker_than_salt_s_default():
    defaults = salt.config.DEFAULT_MASTER_OPTS
    assert defaults["minimum_auth_version"] <= MASTER_CONF["minimum_auth_version"]
    for key in ("auto_accept", "open_mode"):
        assert MASTER_CONF[key] is False and defaults[key] is False
    assert "peer_run" not in MASTER_CONF  # minions may not start runners on the master
