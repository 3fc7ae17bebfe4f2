"""Suite-wide setup."""

import salt._logging.impl

# Importing salt installs a deferred stderr handler that buffers every log record and replays it at interpreter
# exit, after pytest has closed its capture streams ("--- Logging error ---" noise). pytest's own handlers (caplog)
# receive the records; the buffer is not needed in tests.
salt._logging.impl.shutdown_temp_handler()
