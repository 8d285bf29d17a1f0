"""Run one service's nameko worker: `python -m services.common.worker filing`.

The same as `nameko run services.filing.service:FilingService` with the config built from
the environment (services/common/config.py) and JSON logs. The class is named explicitly:
nameko inspecting a whole module would touch mongoengine Documents before any connection
exists.
"""
import warnings

# We chose eventlet on purpose: nameko 2.14, the last stable nameko, is built on it, and the
# workers are nameko processes (the edge, which must not run under eventlet, never imports
# it). Its import-time deprecation notice is for new projects; in every worker's log it is noise.
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated", category=Warning)

import eventlet  # noqa: E402

eventlet.monkey_patch()  # before anything else imports socket or threading

import argparse  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402

from nameko.cli.run import run  # noqa: E402

from services.common import config, logs  # noqa: E402
from services.common.auth import token_settings  # noqa: E402
from services.common.spec import registry  # noqa: E402

log = logging.getLogger("vocreg.worker")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.common.worker")
    parser.add_argument("service", choices=list(registry()))
    args = parser.parse_args(argv)
    logs.configure(config.env("LOG_LEVEL", "INFO"), f"worker:{args.service}")
    logs.route_eventlet_tracebacks(eventlet.hubs.get_hub())
    try:
        worker_config = config.worker_config(args.service)
        if config.jwt_secret() == config.DEV_JWT_SECRET:
            if token_settings().production:
                raise SystemExit("configuration error: VOCREG_JWKS_URL is set but "
                                 "VOCREG_JWT_SECRET is not: the workers sign the tokens they "
                                 "use with each other with it")
            log.warning("VOCREG_JWT_SECRET is not set: using the development secret")
    except SystemExit as exc:
        sys.exit(logs.fail(log, exc.code))
    run([registry()[args.service].load_class()], worker_config)


if __name__ == "__main__":
    main()
