"""Run one service's nameko worker: `python -m services.common.worker filing`.

The same as `nameko run services.filing.service:FilingService` with the config built from
the environment (services/common/config.py). The class is named explicitly: nameko
inspecting a whole module would touch mongoengine Documents before any connection exists.
"""
import eventlet

eventlet.monkey_patch()  # before anything else imports socket or threading

import argparse  # noqa: E402
import logging  # noqa: E402
import logging.config  # noqa: E402

from nameko.cli.run import run  # noqa: E402

from services.common import config  # noqa: E402
from services.common.spec import registry  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.common.worker")
    parser.add_argument("service", choices=list(registry()))
    args = parser.parse_args(argv)
    worker_config = config.worker_config(args.service)
    logging.config.dictConfig(worker_config["LOGGING"])
    if config.jwt_secret() == config.DEV_JWT_SECRET:
        logging.getLogger(__name__).warning(
            "VOCREG_JWT_SECRET is not set: using the development secret")
    run([registry()[args.service].load_class()], worker_config)


if __name__ == "__main__":
    main()
